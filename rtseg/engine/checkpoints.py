"""Loading SAM 2 checkpoints strictly, with errors that say what is wrong and what to do.

The official format is `{"model": state_dict}` (torch.save). Every key must match the model:
a checkpoint of another model size or version is named as such instead of failing on a
tensor shape deep inside torch.
"""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import torch

from rtseg.engine.models import ModelSpec

log = logging.getLogger(__name__)

# Hiera trunk: (patch embedding width, number of blocks) -> size name
_TRUNK_SIGNATURES = {(96, 12): "tiny", (96, 16): "small", (112, 24): "base_plus", (144, 48): "large"}


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used with the requested model."""


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read `{"model": state_dict}` from `path`; raise CheckpointError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; fetch it with `rtseg download` "
            "(or pass --weights random for a smoke test)"
        )
    size = path.stat().st_size
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(
            f"checkpoint {path} ({size} bytes) is truncated or corrupt ({e.__class__.__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); delete it and run `rtseg download` again"
        ) from None
    except Exception as e:  # unpickling errors of files that are not torch checkpoints at all
        raise CheckpointError(
            f"{path} is not a SAM 2 checkpoint (torch.load failed: {e.__class__.__name__}); "
            "expected a file saved as {'model': state_dict}"
        ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        if isinstance(ckpt, dict):  # keys of any type: sorting them as they are may raise TypeError
            keys = sorted(map(repr, ckpt))
            found = f"a dict with keys {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}" if keys else "an empty dict"
        else:
            found = f"a {type(ckpt).__name__}"
        raise CheckpointError(
            f"{path} is not a SAM 2 checkpoint: expected {{'model': state_dict}}, found {found}"
        )
    sd = ckpt["model"]
    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} is not a SAM 2 checkpoint: its 'model' entry holds non-tensors")
    return sd


def describe_checkpoint(sd: dict[str, torch.Tensor]) -> str:
    """Best guess of which official model a state dict belongs to, e.g. 'sam2.1 tiny'."""
    patch = sd.get("image_encoder.trunk.patch_embed.proj.weight")
    if patch is None:
        return "not a SAM 2 model (no Hiera image encoder weights)"
    blocks = {k.split(".")[3] for k in sd if k.startswith("image_encoder.trunk.blocks.")}
    size = _TRUNK_SIGNATURES.get((patch.shape[0], len(blocks)), f"unknown size (width {patch.shape[0]}, {len(blocks)} blocks)")
    version = "sam2.1" if "obj_ptr_tpos_proj.weight" in sd and "no_obj_embed_spatial" in sd else "sam2"
    return f"{version} {size}"


def load_into(model: torch.nn.Module, path: Path, spec: ModelSpec) -> None:
    """Load a checkpoint into `model` strictly; CheckpointError names both models on mismatch."""
    sd = read_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or wrong_shape:
        expected = f"{'sam2.1' if spec.name.startswith('sam2.1') else 'sam2'} {spec.size}"
        found = describe_checkpoint(sd)
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
            if keys
        )
        raise CheckpointError(
            f"checkpoint {path} does not fit model {spec.name} ({expected}); it looks like "
            f"{found}. Pick the matching --model or download {spec.checkpoint_file}. [{detail}]"
        )
    model.load_state_dict(sd, strict=True)
    log.info("loaded checkpoint %s (%s)", path, spec.name)

"""The SAM 2 model sizes rtseg knows: sam2's Hydra config name and the official checkpoint."""
from __future__ import annotations

from dataclasses import dataclass

OFFICIAL_BASE_URL_2_1 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
OFFICIAL_BASE_URL_2_0 = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"


@dataclass(frozen=True)
class ModelSpec:
    name: str  # what users type: sam2.1_hiera_t
    hydra_config: str  # passed through to sam2.build_sam: configs/sam2.1/sam2.1_hiera_t.yaml
    checkpoint_file: str  # official file name: sam2.1_hiera_tiny.pt
    url: str

    @property
    def size(self) -> str:
        return self.checkpoint_file.removesuffix(".pt").split("_hiera_")[1]


def _spec(version: str, short: str, long: str) -> ModelSpec:
    prefix = "sam2.1" if version == "2.1" else "sam2"
    folder = "sam2.1" if version == "2.1" else "sam2"
    base = OFFICIAL_BASE_URL_2_1 if version == "2.1" else OFFICIAL_BASE_URL_2_0
    file = f"{prefix}_hiera_{long}.pt"
    return ModelSpec(f"{prefix}_hiera_{short}", f"configs/{folder}/{prefix}_hiera_{short}.yaml", file, base + file)


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for version in ("2.1", "2.0")
    for s in (
        _spec(version, "t", "tiny"),
        _spec(version, "s", "small"),
        _spec(version, "b+", "base_plus"),
        _spec(version, "l", "large"),
    )
}


def model_spec(name: str) -> ModelSpec:
    """Look a model up by name (sam2.1_hiera_t), or by its checkpoint size (tiny, base_plus)."""
    if name in MODELS:
        return MODELS[name]
    for spec in MODELS.values():
        if spec.name.startswith("sam2.1") and name in (spec.size, spec.checkpoint_file):
            return spec
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")

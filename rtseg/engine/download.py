"""Fetching the official SAM 2 checkpoints: resumable, verified, renamed only when complete.

Bytes go to `<file>.part`; a rerun asks the server for the rest (`Range: bytes=N-`) and
appends when it answers 206, or starts over when it answers 200. The final name appears only
once the file has its full size and loads as a checkpoint of the requested model, so a file
under the final name is always usable.

    rtseg download sam2.1_hiera_t [small ...] | all  [--dir checkpoints] [--base-url URL]
"""
from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from rtseg.engine.checkpoints import CheckpointError, describe_checkpoint, read_state_dict
from rtseg.engine.models import ModelSpec, model_spec

log = logging.getLogger(__name__)

BASE_URL_ENV = "RTSEG_CHECKPOINT_BASE_URL"
DEFAULT_DIR = Path("checkpoints")
CHUNK_BYTES = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(RuntimeError):
    """A checkpoint could not be fetched or what was fetched is not the requested checkpoint."""


def default_checkpoint_path(spec: ModelSpec, dir: Path = DEFAULT_DIR) -> Path:
    """Where `rtseg download` puts (and the supervisor looks for) the official file of `spec`."""
    return Path(dir) / spec.checkpoint_file


def checkpoint_url(spec: ModelSpec, base_url: str | None = None) -> str:
    """The official URL, or the same file name under `base_url` / $RTSEG_CHECKPOINT_BASE_URL."""
    base = base_url or os.environ.get(BASE_URL_ENV)
    return f"{base.rstrip('/')}/{spec.checkpoint_file}" if base else spec.url


def expected_description(spec: ModelSpec) -> str:
    """What `describe_checkpoint` says about the right file, e.g. 'sam2.1 tiny'."""
    return f"{'sam2.1' if spec.name.startswith('sam2.1') else 'sam2'} {spec.size}"


def verify_checkpoint(path: Path, spec: ModelSpec) -> None:
    """Raise CheckpointError unless `path` loads as a checkpoint of `spec`'s model."""
    found = describe_checkpoint(read_state_dict(path))
    if found != expected_description(spec):
        raise CheckpointError(f"{path} holds a {found} checkpoint, not {expected_description(spec)} ({spec.name})")


def download_checkpoint(
    model_or_size: str | ModelSpec,
    dest_dir: Path = DEFAULT_DIR,
    *,
    base_url: str | None = None,
    progress: bool = True,
    timeout_s: float = 30,
) -> Path:
    """Fetch one official checkpoint into `dest_dir` and return its path (skip if already valid)."""
    spec = model_or_size if isinstance(model_or_size, ModelSpec) else model_spec(model_or_size)
    final = default_checkpoint_path(spec, dest_dir)
    if final.is_file():
        try:
            verify_checkpoint(final, spec)
        except CheckpointError as e:
            log.warning("existing %s is not usable (%s); downloading it again", final, e)
        else:
            log.info("%s already present and valid (%s): skipping", final, expected_description(spec))
            return final
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    url = checkpoint_url(spec, base_url)
    _fetch(url, part, timeout_s=timeout_s, progress=progress)
    try:
        verify_checkpoint(part, spec)
    except CheckpointError as e:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"the file downloaded from {url} is not a usable {expected_description(spec)} checkpoint "
            f"and was removed: {e}. If --base-url / ${BASE_URL_ENV} points at a mirror, check that it "
            "serves the official files."
        ) from None
    os.replace(part, final)
    log.info("saved %s (%s, %d bytes)", final, expected_description(spec), final.stat().st_size)
    return final


def _fetch(url: str, part: Path, *, timeout_s: float, progress: bool) -> None:
    """Bring `part` to the full size of `url`, resuming from what it already holds."""
    for _attempt in range(2):  # a second attempt only after discarding a .part the server disowns
        have = part.stat().st_size if part.is_file() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "rtseg-download"})
        if have:
            request.add_header("Range", f"bytes={have}-")
        try:
            response = urllib.request.urlopen(request, timeout=timeout_s)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 416 and have:  # our .part is as long as the file, or longer
                total = _total_of(e.headers.get("Content-Range"))
                if total == have:
                    return
                log.warning("%s holds %d bytes but %s has %s: starting over", part, have, url, total)
                part.unlink()
                continue
            hint = "check the model name and --base-url" if e.code in (403, 404) else "rerun to retry"
            raise DownloadError(f"HTTP {e.code} ({e.reason}) for {url}; {hint}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or e
            raise DownloadError(
                f"could not reach {url} ({reason}); check the network (or --base-url) and rerun"
                + (f": it resumes from the {have} bytes in {part}" if have else "")
            ) from None
        with response:
            _receive(url, response, part, have, progress)
        return


def _receive(url: str, response, part: Path, have: int, progress: bool) -> None:
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        start = int(match.group(1)) if match else -1
        if start != have:
            raise DownloadError(f"{url} answered a resume at byte {have} with range {start}; delete {part} and rerun")
        total = _total_of(response.headers.get("Content-Range"))
        mode = "ab"
        log.info("resuming %s at %d bytes", part.name, have)
    else:
        if have:
            log.info("%s does not resume downloads: starting %s over", url, part.name)
        have, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    log.info("downloading %s -> %s", url, part)
    with open(part, mode) as out, tqdm(
        total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
        desc=part.name.removesuffix(".part"), disable=not progress, leave=False,
    ) as bar:
        try:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as e:
            got = out.tell()
            raise DownloadError(
                f"download of {url} broke off at {got} of {total or '?'} bytes ({e.__class__.__name__}); "
                f"rerun to resume from {part}"
            ) from None
        got = out.tell()
    if total is not None and got != total:
        raise DownloadError(f"download of {url} stopped at {got} of {total} bytes; rerun to resume from {part}")


def _total_of(content_range: str | None) -> int | None:
    total = (content_range or "").rpartition("/")[2].strip()
    return int(total) if total.isdigit() else None


# ---------------------------------------------------------------------------- command line

"""CoTracker3 through torch.hub: load by hub id or local directory, cached per process.

The repository is `track.cotracker_repo`: the allowlisted GitHub id (torch.hub keeps a copy in its
cache) or a local directory holding its `hubconf.py` (a checkout, or that cache directory). The
CoTracker code is never copied into this repository. Weights are the released checkpoint that the
hub entry downloads into the torch hub cache (`track.weights` None), a file given with
`track.weights=FILE` (read with `models.loading.load_weights`: safetensors or tensors only), or
"random" (random init of the real architecture: tests and benchmarks). On CUDA the tracker runs
under bfloat16 autocast. A cached predictor is shared by the episodes a worker process runs one
after another; the online predictor keeps per-video state, so it is not for concurrent threads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from models.device import DeviceUnavailable, resolve_device
from models.loading import UnsafeSourceError, first_line, hub_load, load_weights

ENTRIES = ("cotracker3_offline", "cotracker3_online")
RANDOM = "random"


class TrackerUnavailable(OSError):
    """The tracker code or weights could not be loaded; the message names the setting to change."""


@dataclass(frozen=True)
class CoTracker:
    """A loaded CoTracker predictor (upstream `CoTrackerPredictor` / `CoTrackerOnlinePredictor`)."""

    predictor: torch.nn.Module
    online: bool
    device: torch.device
    name: str

    def autocast(self):
        """bf16 autocast on CUDA, nothing on the CPU."""
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")


def _local(repo: str) -> Path | None:
    path = Path(repo).expanduser()
    if repo.startswith((".", "/", "~")) or path.exists():
        return path
    return None


@functools.lru_cache(maxsize=2)
def load_cotracker(repo: str, entry: str = "cotracker3_offline", weights: str | None = None, device: str = "auto") -> CoTracker:
    """The predictor of hub `entry` from `repo` (hub id or directory), with `weights`, on `device`."""
    if entry not in ENTRIES:
        raise TrackerUnavailable(f"unknown CoTracker entry {entry!r} (track.cotracker_model): use one of {', '.join(ENTRIES)}")
    local = _local(repo)
    if local is not None and not (local / "hubconf.py").is_file():
        what = "has no hubconf.py" if local.is_dir() else "does not exist"
        raise TrackerUnavailable(
            f"CoTracker repository {str(local)!r} {what}; set `--set track.cotracker_repo=DIR` to a co-tracker checkout "
            "or to the torch hub cache copy (e.g. ~/.cache/torch/hub/facebookresearch_co-tracker_main)"
        )
    state = None
    if weights not in (None, RANDOM):
        try:
            state = load_weights(weights)
        except (FileNotFoundError, UnsafeSourceError) as exc:
            raise TrackerUnavailable(
                f"CoTracker weights {weights!r}: {first_line(exc)}; set `--set track.weights=FILE` to the checkpoint "
                "(e.g. scaled_offline.pth from huggingface.co/facebook/cotracker3), or leave track.weights unset to use "
                "the torch hub cache"
            ) from exc
        state = state.get("model", state) if isinstance(state.get("model"), dict) else state
    try:
        predictor = hub_load(str(local) if local else repo, entry, pretrained=weights is None)
    except UnsafeSourceError as exc:
        raise TrackerUnavailable(f"{exc} (track.cotracker_repo)") from exc
    except Exception as exc:  # torch.hub: network errors, a missing cache, a broken checkout
        hint = (
            "the released weights are not in the torch hub cache and cannot be downloaded from here; set "
            "`--set track.weights=FILE` to a downloaded scaled_offline.pth / scaled_online.pth"
            if local is not None else
            "set `--set track.cotracker_repo=DIR` to a local co-tracker checkout (or the torch hub cache copy), and "
            "`--set track.weights=FILE` if the weights are not cached"
        )
        raise TrackerUnavailable(f"cannot load CoTracker {entry!r} from {repo!r}: {first_line(exc)}; {hint}") from exc
    if state is not None:
        try:
            predictor.model.load_state_dict(state)
        except RuntimeError as exc:
            raise TrackerUnavailable(
                f"CoTracker weights {weights!r} do not fit {entry!r}: {first_line(exc)}; check `track.weights` and "
                "`track.cotracker_model` (offline and online checkpoints differ)"
            ) from exc
    try:
        dev = resolve_device(device)
    except DeviceUnavailable as exc:
        raise TrackerUnavailable(f"tracker {exc} (track.device)") from None
    predictor = predictor.to(dev).eval()
    return CoTracker(predictor=predictor, online=entry.endswith("_online"), device=dev, name=f"{repo}:{entry}")

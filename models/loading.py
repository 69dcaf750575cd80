"""Loading weights without executing code from the file: safetensors, or torch.load(weights_only=True).

torch.hub runs the repository's `hubconf.py`, so it is allowed only for repositories on an
allowlist (by default the ones the pipeline names) or for a local directory the user points at.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

ALLOWED_HUB_REPOS = ("facebookresearch/co-tracker", "facebookresearch/dinov2")
_PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt"}


class UnsafeSourceError(ValueError):
    """A checkpoint format or hub repository that could run arbitrary code."""


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from `.safetensors`, or from a torch pickle restricted to tensors (weights_only)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix in _PICKLE_SUFFIXES:
        return torch.load(path, map_location="cpu", weights_only=True)
    raise UnsafeSourceError(f"{path}: unknown checkpoint format; use .safetensors (or a torch file with tensors only)")


def pretrained_source(id_or_dir: str) -> tuple[str, str | None]:
    """(what to pass to from_pretrained, why a path cannot be used or None): a path-looking or existing
    `id_or_dir` must be a save_pretrained directory (config.json); anything else is a hub id."""
    local = Path(id_or_dir).expanduser()
    if (id_or_dir.startswith((".", "/", "~")) or local.exists()) and not (local / "config.json").is_file():
        return str(local), "has no config.json" if local.is_dir() else "does not exist"
    return (str(local) if local.exists() else id_or_dir), None


def download_hint(id_or_dir: str, point_at: str) -> str:
    """What to do when `from_pretrained(id_or_dir)` could not reach or read the hub; `point_at` says how to use a copy."""
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
    where = "The model hub is not reachable from here (HF_HUB_OFFLINE=1)" if offline else "The hub download failed"
    return f"{where}. Download the checkpoint on a machine with access (e.g. `hf download {id_or_dir} --local-dir DIR`) and {point_at}"


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (transformers' are paragraphs), without its final period."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")


def hub_load(repo_or_dir: str, entry: str, *args: Any, allowed: tuple[str, ...] = ALLOWED_HUB_REPOS, **kwargs: Any):
    """torch.hub.load from a local directory, or from an allowlisted GitHub repository ("owner/name[:ref]")."""
    local = Path(repo_or_dir)
    if local.is_dir():
        return torch.hub.load(str(local), entry, *args, source="local", trust_repo=True, **kwargs)
    repo = repo_or_dir.split(":", 1)[0]
    if repo not in allowed:
        raise UnsafeSourceError(
            f"torch.hub repository {repo_or_dir!r} is not allowed (allowed: {', '.join(allowed)}); "
            "clone it and pass the local directory to use it anyway"
        )
    return torch.hub.load(repo_or_dir, entry, *args, trust_repo=True, **kwargs)

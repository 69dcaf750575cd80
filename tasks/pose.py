"""Stage 1b: camera poses. `given` poses are read by decode; `open3d` estimates them (placeholder)."""

from __future__ import annotations

from tasks.config import IngestConfig
from tasks.errors import ConfigurationError
from tasks.types import Episode


def estimate_poses(ep: Episode, cfg: IngestConfig) -> Episode:
    if cfg.pose.backend == "given":
        return ep
    raise ConfigurationError(f"pose backend {cfg.pose.backend!r} is not implemented yet")

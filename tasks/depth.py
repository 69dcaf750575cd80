"""Stage 1a: metric depth. `given` depth is read by decode; `depth-anything` predicts it (placeholder)."""

from __future__ import annotations

from tasks.config import IngestConfig
from tasks.errors import ConfigurationError
from tasks.types import Episode


def estimate_depth(ep: Episode, cfg: IngestConfig) -> Episode:
    if cfg.depth.backend == "given":
        return ep
    raise ConfigurationError(f"depth backend {cfg.depth.backend!r} is not implemented yet")

"""Stage 7: motion segmentation and hierarchical captions (placeholder: no captions yet)."""

from __future__ import annotations

from tasks.config import IngestConfig
from tasks.types import Episode


def caption(ep: Episode, cfg: IngestConfig) -> Episode:
    return ep

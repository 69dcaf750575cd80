"""The runner that works in this process: tests, one video, debugging. Same work as the Ray runner."""

from __future__ import annotations

from collections.abc import Callable

from tasks.config import IngestConfig
from tasks.run.episode import EpisodeResult, process_episode, usable_cores, warm_models
from tasks.types import EpisodeSource


class SequentialRunner:
    """Episodes one after another in this process (the frames write overlaps tracking on a spare core)."""

    def start(self, cfg: IngestConfig) -> None:
        warm_models(cfg)

    def extract(
        self,
        sources: list[EpisodeSource],
        cfg: IngestConfig,
        root: str,
        on_result: Callable[[EpisodeResult], None] | None = None,
    ) -> list[EpisodeResult]:
        results = []
        for src in sources:
            res = process_episode(src, cfg, root, overlap_writes=usable_cores() > 1)
            results.append(res)
            if on_result:
                on_result(res)
        return results

"""Fan episodes out over Ray workers, one task per episode, with bounded in-flight work.

Each task runs `process_episode` (stages + uncommitted fragment writes) and returns a small
`EpisodeResult`; the driver never sees arrays. A task that dies (out of memory, a segfault in a
native library) becomes a failed episode row written by the driver, so nothing is lost silently.
Ray Core tasks rather than Ray Data: every stage here is CPU-only, so per-episode tasks give the
same parallelism with exact per-episode progress; GPU actor pools arrive with the model backends.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import ray

from tasks.config import IngestConfig
from tasks.run.episode import EpisodeResult, episode_resources, failed_result, process_episode, usable_cores, warm_models
from tasks.stage import Resources
from tasks.types import EpisodeSource

# Workers inherit these; Ray must not try to reach a Prefect API or a model hub on its own.
_WORKER_ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MU0_DECODE_THREADS": "1"}


def _process_on_worker(src: EpisodeSource, cfg: IngestConfig, root: str) -> EpisodeResult:
    """One episode per CPU: library thread pools would fight the other workers for cores.

    The frames write overlaps tracking only where the node has cores Ray does not hand out
    (e.g. `ray.init(num_cpus=1)` on a 2-core machine); when Ray runs an episode on every core,
    a side thread only takes time from the other episodes (30 episodes, 2 workers on 2 cores,
    four alternating runs: 12.15 s inline against 12.30 s with the thread).
    """
    import cv2

    cv2.setNumThreads(1)
    return process_episode(src, cfg, root, overlap_writes=_node_has_free_cores())


@functools.cache
def _node_has_free_cores() -> bool:
    """More cores on this node than Ray's CPU slots there (looked up once per worker process).

    A failed lookup answers True (the side thread): a tuning question must not fail episodes.
    """
    try:
        node = ray.get_runtime_context().get_node_id()
        slots = next((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["NodeID"] == node), 0.0)
    except Exception:  # noqa: BLE001
        return True
    return usable_cores() > slots


LEROBOT_BYTES_PER_FRAME = 20_000  # a guess at a compressed frame: orders a LeRobot episode among file sources


def _size(src: EpisodeSource) -> int:
    """Bytes of the episode's input (its share of a LeRobot mp4 estimated from its length)."""
    if src.lerobot is not None:
        return src.lerobot.length * LEROBOT_BYTES_PER_FRAME
    p = Path(src.uri)
    try:
        return sum(f.stat().st_size for f in p.iterdir()) if p.is_dir() else p.stat().st_size
    except OSError:
        return 0


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to `address` (e.g. "auto" inside a cluster) or start a local Ray without dashboard."""
    if not ray.is_initialized():
        _start(address, num_cpus)


def _start(address: str | None, num_cpus: int | None) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    env = {"env_vars": {k: os.environ.get(k, v) for k, v in _WORKER_ENV.items()}}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=env, log_to_driver=False)


def _warm_worker(cfg: IngestConfig) -> None:
    """Import the pipeline and load the config's models, once per worker process."""
    warm_models(cfg)


class NoGPUError(RuntimeError):
    """The config reserves GPUs per episode but the Ray cluster has too few: tasks would wait forever."""


def check_gpus(per_episode: float) -> None:
    have = ray.cluster_resources().get("GPU", 0.0)
    if per_episode > have:
        raise NoGPUError(
            f"the config reserves {per_episode:g} GPU per episode but the Ray cluster has {have:g}; "
            "connect to a cluster with GPUs (--ray-address) or set the backend's `gpus` to 0 "
            "(--set depth.gpus=0 / --set captions.gpus=0)"
        )


class RayRunner:
    """One Ray task per episode, at most `max_in_flight` queued, longest episodes first.

    `start` brings Ray up and warms every worker slot (outside a run's clock); `extract` may be
    called many times on the same runner.
    """

    def __init__(
        self, address: str | None = None, num_cpus: int | None = None, max_in_flight: int | None = None, retries: int = 2
    ):
        self.address, self.num_cpus, self.max_in_flight = address, num_cpus, max_in_flight
        self.retries = retries  # a worker that dies (OOM, segfault) is retried this often, then the episode is failed
        self._warm: str | None = None

    def start(self, cfg: IngestConfig) -> None:
        ensure_ray(self.address, self.num_cpus)
        need = episode_resources(cfg)
        check_gpus(need.gpus)
        key = cfg.model_dump_json()
        if self._warm != key:
            warm = ray.remote(num_cpus=need.cpus, num_gpus=need.gpus)(_warm_worker)
            ray.get([warm.remote(cfg) for _ in range(self._slots(need))])
            self._warm = key

    @staticmethod
    def _slots(need: Resources) -> int:
        """How many episode tasks can run at once on this cluster."""
        res = ray.cluster_resources()
        slots = int(res.get("CPU", 1) / max(need.cpus, 1e-9))
        if need.gpus > 0:
            slots = min(slots, int(res.get("GPU", 0) / need.gpus))
        return max(1, slots)

    def extract(
        self,
        sources: list[EpisodeSource],
        cfg: IngestConfig,
        root: str,
        on_result: Callable[[EpisodeResult], None] | None = None,
    ) -> list[EpisodeResult]:
        """Process every source on Ray; results arrive (and `on_result` fires) as episodes finish."""
        self.start(cfg)
        need = episode_resources(cfg)
        remote = ray.remote(num_cpus=need.cpus, num_gpus=need.gpus, max_retries=self.retries)(_process_on_worker)
        faults = {k: v for k, v in os.environ.items() if k.startswith("MU0_FAULT")}  # reliability tests only
        if faults:
            remote = remote.options(runtime_env={"env_vars": faults})
        limit = self.max_in_flight or max(2, self._slots(need) * 2)
        cfg_ref = ray.put(cfg)
        pending: dict[ray.ObjectRef, EpisodeSource] = {}
        todo = sorted(sources, key=_size, reverse=True)  # longest first: no long episode left for the end
        results: list[EpisodeResult] = []
        while todo or pending:
            while todo and len(pending) < limit:
                src = todo.pop(0)
                pending[remote.remote(src, cfg_ref, root)] = src
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                src = pending.pop(ref)
                try:
                    res = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a dead worker is this episode's failure only
                    why = f"{src.uri}: Ray task failed {self.retries + 1} times; last: {type(exc).__name__}: {exc}"
                    res = failed_result(src, cfg, root, "worker", why[:2000])
                results.append(res)
                if on_result:
                    on_result(res)
        return results

"""Fan episodes out over Ray: one CPU task per episode, one actor pool per model, bounded in-flight work.

Each task runs `process_episode` (stages + uncommitted fragment writes) and returns a small
`EpisodeResult`; the driver never sees arrays. The CPU stages run in the task itself; a stage that
runs a model under the config (depth-anything, cotracker, DINO keypoints: `Stage.uses_model`) is
sent to that model's actor pool (tasks/run/model_pools.py), whose actors load the model once and
serve every episode, each reserving the stage's `gpus` (fractions share a GPU). So the tasks
reserve CPU only (plus any GPU a CPU stage still asks for, e.g. `captions.gpus`), and a GPU node
holds each model once instead of once per worker. A config that asks for more GPUs than the
cluster has fails at once with a message, before anything waits on them. A task that dies (out of
memory, a segfault in a native library) becomes a failed episode row written by the driver, and an
error or death on a model actor becomes the failed episode's error row: nothing is lost silently.
Ray Core tasks and actors rather than Ray Data: per-episode tasks give the same parallelism with
exact per-episode progress and per-episode error rows.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

import ray

from tasks.config import IngestConfig
from tasks.run.episode import (
    STAGES, EpisodeResult, StageRun, failed_result, model_stages, process_episode, usable_cores, warm_models,
)
from tasks.run.model_pools import ModelPools, PoolSpec, pool_specs
from tasks.stage import Resources, resources_of
from tasks.types import EpisodeSource

# Workers inherit these; Ray must not try to reach a Prefect API or a model hub on its own.
_WORKER_ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MU0_DECODE_THREADS": "1"}


def _process_on_worker(src: EpisodeSource, cfg: IngestConfig, root: str, runners: dict[str, StageRun]) -> EpisodeResult:
    """One episode per CPU: library thread pools would fight the other workers for cores.

    The frames write overlaps tracking only where the node has cores Ray does not hand out
    (e.g. `ray.init(num_cpus=1)` on a 2-core machine); when Ray runs an episode on every core,
    a side thread only takes time from the other episodes (30 episodes, 2 workers on 2 cores,
    four alternating runs: 12.15 s inline against 12.30 s with the thread).
    """
    import cv2

    cv2.setNumThreads(1)
    return process_episode(src, cfg, root, overlap_writes=_node_has_free_cores(), runners=runners)


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


def _warm_worker(cfg: IngestConfig, pooled: frozenset[str]) -> None:
    """Import the pipeline and load the models of the config's CPU stages, once per worker process."""
    warm_models(cfg, skip=pooled)


def task_resources(cfg: IngestConfig) -> Resources:
    """What one episode's task reserves: the stages it runs itself (model stages run on their actors)."""
    pooled = {s.name for s in model_stages(cfg)}
    return resources_of([s for s in STAGES if s.name not in pooled], cfg)


class NoGPUError(RuntimeError):
    """The config reserves GPUs (per episode or per model actor) that the Ray cluster lacks: it would wait forever."""


def check_gpus(per_episode: float, pools: list[PoolSpec] = ()) -> None:
    """Fail at once when the cluster cannot hold one episode task plus every model actor."""
    have = ray.cluster_resources().get("GPU", 0.0)
    if per_episode > have:
        raise NoGPUError(
            f"the config reserves {per_episode:g} GPU per episode but the Ray cluster has {have:g}; "
            "connect to a cluster with GPUs (--ray-address) or set the backend's `gpus` to 0 "
            "(--set depth.gpus=0 / --set captions.gpus=0)"
        )
    on_gpu = [p for p in pools if p.gpus > 0]
    actors = sum(p.gpus * p.actors for p in on_gpu)
    hint = " / ".join(f"--set {p.gpu_setting}=0" for p in on_gpu)
    if per_episode + actors > have + 1e-9:
        also = f" plus {per_episode:g} per episode" if per_episode else ""
        raise NoGPUError(
            f"the config's model actors reserve {actors:g} GPU ({'; '.join(p.describe() for p in on_gpu)}){also} "
            f"but the Ray cluster has {have:g}; connect to a cluster with GPUs (--ray-address), run fewer actors "
            f"per model, or set the backend's `gpus` to 0 ({hint})"
        )
    biggest = max((n["Resources"].get("GPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=0.0)
    for p in on_gpu:
        if p.gpus > biggest:
            raise NoGPUError(
                f"a {p.stage} model actor reserves {p.gpus:g} GPU but no Ray node has more than {biggest:g}; "
                f"lower it (--set {p.gpu_setting}=...)"
            )


class RayRunner:
    """One Ray task per episode, at most `max_in_flight` queued, longest episodes first; one actor pool per model.

    `start` brings Ray up, starts the model actors (each loads its model) and warms every worker
    slot (outside a run's clock); `extract` may be called many times on the same runner, and
    `close` (or dropping the runner) ends the actors. `actors_per_model` (None: as many as the
    cluster's GPUs hold, at least one; tasks/run/model_pools.py) and `actor_concurrency` (calls one
    actor runs at once) size the pools.
    """

    def __init__(
        self, address: str | None = None, num_cpus: int | None = None, max_in_flight: int | None = None,
        retries: int = 2, actors_per_model: int | None = None, actor_concurrency: int = 2,
    ):
        self.address, self.num_cpus, self.max_in_flight = address, num_cpus, max_in_flight
        self.retries = retries  # a dead worker or actor (OOM, segfault) is retried this often, then the episode fails
        self.actors_per_model, self.actor_concurrency = actors_per_model, actor_concurrency
        self.pools: ModelPools | None = None
        self._warm: str | None = None

    def start(self, cfg: IngestConfig) -> None:
        ensure_ray(self.address, self.num_cpus)
        need = task_resources(cfg)
        check_gpus(need.gpus)
        key = cfg.model_dump_json()
        if self._warm == key:
            return
        self.close()
        free = ray.cluster_resources().get("GPU", 0.0) - need.gpus
        specs = pool_specs(cfg, self.actors_per_model, free, self._slots(need))
        check_gpus(need.gpus, specs)
        if specs:
            self.pools = ModelPools(specs, cfg, self.actor_concurrency, self.retries, _faults())
        pooled = frozenset(s.stage for s in specs)
        warm = ray.remote(num_cpus=need.cpus, num_gpus=need.gpus)(_warm_worker)
        ray.get([warm.remote(cfg, pooled) for _ in range(self._slots(need))])
        if self.pools:
            self.pools.wait_ready()
        self._warm = key

    def close(self) -> None:
        """End the model actors (their GPUs are free again); the next `start` makes new ones."""
        if self.pools is not None:
            self.pools.close()
        self.pools, self._warm = None, None

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
        need = task_resources(cfg)
        remote = ray.remote(num_cpus=need.cpus, num_gpus=need.gpus, max_retries=self.retries)(_process_on_worker)
        faults = _faults()
        if faults:
            remote = remote.options(runtime_env={"env_vars": faults})
        limit = self.max_in_flight or max(2, self._slots(need) * 2)
        cfg_ref = ray.put(cfg)
        pending: dict[ray.ObjectRef, EpisodeSource] = {}
        todo = sorted(sources, key=_size, reverse=True)  # longest first: no long episode left for the end
        results: list[EpisodeResult] = []
        submitted = 0
        while todo or pending:
            while todo and len(pending) < limit:
                src = todo.pop(0)
                runners = self.pools.runners(submitted) if self.pools else {}  # round-robin over each pool's actors
                pending[remote.remote(src, cfg_ref, root, runners)] = src
                submitted += 1
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


def _faults() -> dict[str, str]:
    """MU0_FAULT* settings for workers and actors (reliability tests only; storage/faults.py)."""
    return {k: v for k, v in os.environ.items() if k.startswith("MU0_FAULT")}

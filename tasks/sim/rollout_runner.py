"""Many closed-loop episodes, in this process or on Ray, summarised as per-task success rates.

Ray: one actor per CPU slot builds its own policy once from the factory (a checkpoint loads once
per worker, not per episode) and runs episodes as they are handed out. Episodes go out round-robin
over tasks, so a partial run is balanced. Videos are not rendered while evaluating (rendering costs
~40x a physics step): each episode returns its executed actions, and the few episodes chosen for
videos (per task, the first `videos` successes and failures by seed) are replayed with rendering.
The physics is deterministic, so a replay is the episode; a replay that ends differently is warned
about. Replays return MP4 bytes, so `out_dir` need only exist on the driver.

Outputs in out_dir: rollouts.json (one row per episode: task, seed, success, steps), summary.json
(the run and its per-task rates), videos/{task}-{seed}-{success|failure}.mp4.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from tasks.sim.policies import PolicyFactory, ReplayPolicy, as_factory
from tasks.sim.rollout import RolloutResult, rollout_episode
from tasks.sim.rollout_config import PolicySpec
from tasks.sim.success_rate import TaskRate, summarize

Job = tuple[str, int]  # (task, seed)


class RolloutSummary(BaseModel):
    policy: str
    out_dir: str
    tasks: list[str]
    episodes: int  # per task
    seed: int
    max_steps: int | None
    rates: list[TaskRate]
    videos: list[str]
    setup_s: float  # Ray start-up and building the policies
    episodes_s: float  # running every episode
    videos_s: float  # replaying and encoding the chosen episodes
    wall_s: float  # the whole call


def _jobs(tasks: list[str], episodes: int, seed: int) -> list[Job]:
    """Episode i of task T uses seed + i; round-robin over tasks."""
    return [(task, seed + i) for i in range(episodes) for task in tasks]


def _label(policy: PolicySpec | PolicyFactory) -> str:
    return policy.label() if isinstance(policy, PolicySpec) else getattr(policy, "__qualname__", type(policy).__name__)


def _video_mp4(task: str, seed: int, actions: np.ndarray, path: Path | None = None) -> tuple[bytes, bool, int]:
    """Replay recorded actions with rendering; the MP4 (written to `path`, else returned as bytes), success, steps."""
    from tasks.sim.generate import write_video

    replay = rollout_episode(ReplayPolicy(actions), task, seed, max_steps=max(1, len(actions)), record_video=True)
    if path is not None:
        write_video(path, replay.frames)
        return b"", replay.success, replay.steps
    with tempfile.TemporaryDirectory() as tmp:
        write_video(Path(tmp) / "v.mp4", replay.frames)
        return (Path(tmp) / "v.mp4").read_bytes(), replay.success, replay.steps


class _Worker:
    """Runs episodes with its own policy (built once) and replays chosen ones into MP4s; a Ray actor on Ray."""

    def __init__(self, factory: PolicyFactory):
        self.policy = factory()

    def ready(self) -> bool:
        return True

    def run(self, task: str, seed: int, max_steps: int | None) -> RolloutResult:
        return rollout_episode(self.policy, task, seed, max_steps)

    def video(self, task: str, seed: int, actions: np.ndarray, path: Path | None = None) -> tuple[bytes, bool, int]:
        return _video_mp4(task, seed, actions, path)


class _Sequential:
    """Everything in this process, one episode after another (tests, debugging)."""

    def __init__(self, factory: PolicyFactory):
        self.worker = _Worker(factory)

    def run(self, jobs: list[Job], max_steps, on_result) -> list[RolloutResult]:
        results = []
        for task, seed in jobs:
            results.append(self.worker.run(task, seed, max_steps))
            if on_result:
                on_result(results[-1])
        return results

    def videos(self, picked: list[RolloutResult], paths: list[Path]) -> list[tuple[bool, int]]:
        return [self.worker.video(r.task, r.seed, r.actions, p)[1:] for r, p in zip(picked, paths)]

    def close(self) -> None:
        pass


class _RayPool:
    """One actor per CPU slot (at most one per episode); each takes the next episode as soon as it is free."""

    def __init__(self, factory: PolicyFactory, n_jobs: int, ray_address: str | None, num_cpus: int | None):
        import ray

        from tasks.run.ray_runner import ensure_ray

        ensure_ray(ray_address, num_cpus)
        slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(_Worker)
        self.actors = [actor.remote(factory) for _ in range(min(slots, n_jobs))]
        try:
            ray.get([a.ready.remote() for a in self.actors])  # policies built, and a failing build raised, here
        except BaseException:
            self.close()
            raise

    def _map(self, calls: list[Callable], on_result=None) -> list:
        """calls[i](actor) -> ObjectRef, each on the next free actor; results in the order of `calls`."""
        import ray

        idle, todo, pending, out = list(self.actors), list(enumerate(calls)), {}, {}
        while todo or pending:
            while todo and idle:
                a = idle.pop()
                i, call = todo.pop(0)
                pending[call(a)] = (i, a)
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i, a = pending.pop(ref)
                idle.append(a)
                out[i] = ray.get(ref)
                if on_result:
                    on_result(out[i])
        return [out[i] for i in range(len(calls))]

    def run(self, jobs: list[Job], max_steps, on_result) -> list[RolloutResult]:
        return self._map([lambda a, t=t, s=s: a.run.remote(t, s, max_steps) for t, s in jobs], on_result)

    def videos(self, picked: list[RolloutResult], paths: list[Path]) -> list[tuple[bool, int]]:
        outs = self._map([lambda a, r=r: a.video.remote(r.task, r.seed, r.actions) for r in picked])
        for path, (mp4, _, _) in zip(paths, outs):
            path.write_bytes(mp4)
        return [o[1:] for o in outs]

    def close(self) -> None:
        import ray

        for a in self.actors:  # their CPU slots go back to the cluster
            ray.kill(a)


def _pick_videos(results: list[RolloutResult], tasks: list[str], per_outcome: int) -> list[RolloutResult]:
    """Per task, the first `per_outcome` successes and the first `per_outcome` failures by seed."""
    picked = []
    for task in tasks:
        for outcome in (True, False):
            same = sorted((r for r in results if r.task == task and r.success == outcome), key=lambda r: r.seed)
            picked += same[:per_outcome]
    return picked


def _write_videos(pool: _Sequential | _RayPool, picked: list[RolloutResult], video_dir: Path) -> list[str]:
    video_dir.mkdir(parents=True, exist_ok=True)
    for old in [*video_dir.glob("*-success.mp4"), *video_dir.glob("*-failure.mp4")]:
        old.unlink()  # a rerun into the same directory must not show another run's episodes
    paths = [video_dir / f"{r.task}-{r.seed}-{'success' if r.success else 'failure'}.mp4" for r in picked]
    for r, (success, steps) in zip(picked, pool.videos(picked, paths)):
        if (success, steps) != (r.success, r.steps):
            warnings.warn(f"{r.task} seed {r.seed}: the replayed video ends differently ({success}, {steps} steps) "
                          f"from the episode ({r.success}, {r.steps} steps): is the physics deterministic here?")
    return [str(p) for p in paths]


def run_rollouts(
    policy_factory: PolicySpec | PolicyFactory,
    tasks: list[str],
    episodes: int,
    seed: int,
    out_dir: str | Path,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    videos: int = 2,
    runner: Literal["ray", "sequential"] = "ray",
    max_steps: int | None = None,
    on_result: Callable[[RolloutResult], None] | None = None,
) -> RolloutSummary:
    """`episodes` episodes of every task (episode i seeded seed + i), written to out_dir and summarised.

    `policy_factory`: a PolicySpec, or a picklable zero-argument callable returning a Policy (each Ray
    worker calls it once). Use seeds no demonstration corpus used (tasks.sim.rollout_config.ROLLOUT_SEED).
    """
    if runner not in ("ray", "sequential"):
        raise ValueError(f"runner must be 'ray' or 'sequential', not {runner!r}")
    if not tasks or episodes < 1:
        raise ValueError("need at least one task and one episode")
    t0 = time.perf_counter()
    factory = as_factory(policy_factory)
    jobs = _jobs(list(tasks), episodes, seed)
    pool = _RayPool(factory, len(jobs), ray_address, num_cpus) if runner == "ray" else _Sequential(factory)
    try:
        t1 = time.perf_counter()
        results = sorted(pool.run(jobs, max_steps, on_result), key=lambda r: (tasks.index(r.task), r.seed))
        t2 = time.perf_counter()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        rows = [r.row() for r in results]
        (out / "rollouts.json").write_text(json.dumps(rows, indent=1))
        video_paths = _write_videos(pool, _pick_videos(results, list(tasks), videos), out / "videos") if videos else []
    finally:
        pool.close()
    t3 = time.perf_counter()
    summary = RolloutSummary(
        policy=_label(policy_factory), out_dir=str(out), tasks=list(tasks), episodes=episodes, seed=seed,
        max_steps=max_steps, rates=summarize(rows), videos=video_paths, setup_s=t1 - t0, episodes_s=t2 - t1,
        videos_s=t3 - t2, wall_s=t3 - t0,
    )
    (out / "summary.json").write_text(summary.model_dump_json(indent=1))
    return summary

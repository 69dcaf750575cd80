"""One Ray actor pool per model-backed stage: each actor loads its model once and serves many episodes.

A stage that `uses_model` under the config (depth-anything, the cotracker tracker, DINO keypoints) gets
a pool of `ModelActor`s, each reserving the stage's `resources().gpus` (fractions share a GPU) and no
CPU slot. An actor loads its model in its constructor (`stage.warm`, outside a run's clock) and
then runs that one stage for whichever episode task calls it; calls queue on the actor, and
`max_concurrency` > 1 lets one episode's transfer overlap another's forward pass. There is no
batching across episodes: each call is one episode's frames, batched within it as the stage does.

The episode task (tasks/run/ray_runner.py) runs the CPU stages itself and, for a pooled stage, calls
a `PooledStage` proxy in place of `stage.run` (`run_stages(runners=...)`). Errors stay data, as in
the sequential runner: an exception in the actor comes back as the message `run_stages` would have
written, a model that cannot load fails each episode with the load error (warm's failure is left
for `run` to report, exactly as `warm_all` does), and an actor that dies (after its restarts)
fails the episodes that called it with a message naming the actor.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np
import ray
from ray.exceptions import RayActorError

from storage.faults import fault_point
from tasks.config import IngestConfig
from tasks.extract.spill import SpilledArray
from tasks.run.episode import STAGES, StageFailed, model_stages, stage_error
from tasks.types import Episode

READY_TIMEOUT_S = 1800.0  # loading a model takes minutes at most; an actor Ray cannot place never starts


@dataclass(frozen=True)
class PoolSpec:
    """One model-backed stage's pool: `actors` actors of `gpus` GPUs each."""

    stage: str
    gpus: float
    actors: int
    gpu_setting: str  # the `--set` key of `gpus`

    def describe(self) -> str:
        return f"{self.stage}: {self.actors} actor{'s' * (self.actors != 1)} x {self.gpus:g} GPU"


def pool_specs(cfg: IngestConfig, actors_per_model: int | None, gpus_free: float, max_useful: int) -> list[PoolSpec]:
    """The pools `cfg` needs, `actors_per_model` actors each (the same count for every pool).

    None: as many as the cluster's free GPUs (`gpus_free`) hold one actor of each model at once, at
    least 1 and at most `max_useful` (episodes that can run at once: more actors would sit idle);
    1 when no model asks for a GPU. A config that does not fit is check_gpus's to refuse.
    """
    stages = model_stages(cfg)
    gpus = {s: s.resources(s.settings(cfg)).gpus for s in stages}
    n = actors_per_model
    if n is None:
        per_set = sum(gpus.values())
        n = max(1, min(max_useful, math.floor(gpus_free / per_set + 1e-9))) if per_set > 0 else 1
    return [PoolSpec(s.name, g, n, s.gpu_setting()) for s, g in gpus.items()]


@dataclass(frozen=True)
class StageFailure:
    """What an actor sends back when its stage raised: the episode's error text, made where the traceback is."""

    message: str


class ModelActor:
    """Runs one model-backed stage (a Ray actor; the model is loaded once, in the constructor)."""

    def __init__(self, stage: str, cfg: IngestConfig):
        self.stage = next(s for s in STAGES if s.name == stage)
        self.pid, self.calls, self.load_error = os.getpid(), 0, ""
        self.node = ray.get_runtime_context().get_node_id()
        try:
            self.stage.warm(self.stage.settings(cfg))
        except Exception as exc:  # noqa: BLE001 - `run` meets the same error and reports it per episode
            self.load_error = f"{type(exc).__name__}: {exc}"

    def info(self) -> dict:
        """Where this actor lives and what it did (the runner waits on it: the model is loaded by then)."""
        return {"stage": self.stage.name, "pid": self.pid, "node": self.node, "calls": self.calls,
                "load_error": self.load_error}

    def run(self, ep: Episode, settings: object) -> dict | StageFailure:
        """The fields the stage changed (arrays it left alone stay out: no frames sent back), or its failure."""
        fault_point(f"actor:{self.stage.name}")
        self.calls += 1
        try:
            out = self.stage.run(ep, settings)
        except Exception as exc:  # noqa: BLE001 - errors are data; the caller's run_stages records them
            return StageFailure(stage_error(ep.source, exc))
        return _changes(ep, out)


def _changes(before: Episode, after: Episode) -> dict:
    changed = {}
    for f in dataclasses.fields(Episode):
        new = getattr(after, f.name)
        if f.name != "source" and not (isinstance(new, np.ndarray) and new is getattr(before, f.name)):
            changed[f.name] = new
    return changed


def _writable(value: object) -> object:
    """Arrays from Ray's object store are read-only views; later stages may write theirs in place."""
    return np.array(value) if isinstance(value, np.ndarray) and not value.flags.writeable else value


def _in_memory(ep: Episode) -> Episode:
    """The episode with its spilled arrays read into memory, for an actor on another node (their files are here)."""
    arrays = {f.name: np.array(v) for f in dataclasses.fields(Episode)
              if isinstance(v := getattr(ep, f.name), SpilledArray)}
    return ep.replace(**arrays, spill_dir="")


@dataclass(frozen=True)
class PooledStage:
    """Runs a stage on one actor of its pool, in place of `stage.run` (picklable: goes to the episode task).

    A spilled episode travels as its files' paths when the actor is on this node (`node`); to an actor on another
    node its arrays go through the object store, as an episode held in memory does.
    """

    stage: str
    actor: ray.actor.ActorHandle
    node: str = ""

    def __call__(self, ep: Episode, settings: object) -> Episode:
        far = ep.spill_dir and self.node != ray.get_runtime_context().get_node_id()
        try:
            reply = ray.get(self.actor.run.remote(_in_memory(ep) if far else ep, settings))
        except RayActorError as exc:
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StageFailed(f"{ep.source.uri}: the {self.stage} model actor died ({why[:500]})") from None
        if isinstance(reply, StageFailure):
            raise StageFailed(reply.message)
        return ep.replace(**{k: _writable(v) for k, v in reply.items()} | {"spill_dir": ep.spill_dir})


class ModelPools:
    """The actors of every pool in `specs`; `runners(i)` gives the i-th episode its actors, round-robin."""

    def __init__(
        self, specs: list[PoolSpec], cfg: IngestConfig, concurrency: int = 2, restarts: int = 2,
        env: dict[str, str] | None = None,
    ):
        self.specs = specs
        self.actors: dict[str, list[ray.actor.ActorHandle]] = {}
        self.nodes: dict = {}  # actor id -> node id (wait_ready learns them)
        for spec in specs:
            cls = ray.remote(
                num_cpus=0, num_gpus=spec.gpus, max_concurrency=concurrency,
                max_restarts=restarts, max_task_retries=restarts,  # a dead actor reloads its model and retries the call
            )(ModelActor)
            if env:
                cls = cls.options(runtime_env={"env_vars": env})
            self.actors[spec.stage] = [cls.remote(spec.stage, cfg) for _ in range(spec.actors)]

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> list[dict]:
        """Block until every actor has loaded its model (or failed to: episodes then report it); learns each
        actor's node."""
        refs = [a.info.remote() for pool in self.actors.values() for a in pool]
        ready, waiting = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        if waiting:
            raise RuntimeError(
                f"model actors ({', '.join(s.describe() for s in self.specs)}) did not start within {timeout_s:g} s: "
                "the cluster may lack a node with that many free GPUs"
            )
        out = []
        for ref in refs:
            try:
                out.append(ray.get(ref))
            except RayActorError as exc:  # died while loading: each episode's call reports it (after the restarts)
                out.append({"load_error": f"actor died: {exc}"[:500]})
        actors = [a for pool in self.actors.values() for a in pool]
        self.nodes = {a._actor_id: info.get("node", "") for a, info in zip(actors, out)}
        return out

    def runners(self, i: int) -> dict[str, PooledStage]:
        picked = {name: pool[i % len(pool)] for name, pool in self.actors.items()}
        return {name: PooledStage(name, a, self.nodes.get(a._actor_id, "")) for name, a in picked.items()}

    def info(self) -> list[dict]:
        return ray.get([a.info.remote() for pool in self.actors.values() for a in pool])

    def close(self) -> None:
        for pool in self.actors.values():
            for a in pool:
                ray.kill(a)
        self.actors = {}

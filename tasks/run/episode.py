"""Run the stages over one episode, recording failures as data, and hand back fragments.

`process_episode` is the unit of work a Ray worker (or the sequential runner) executes: it runs the
stages, converts the episode to table rows and writes them as *uncommitted* Lance fragments. The
driver commits them (storage.writer.commit_run), so a crash before the commit leaves no rows.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from storage.faults import fault_point
from storage.schema import table_schemas
from storage.writer import write_uncommitted
from tasks.captions.caption import Captioning
from tasks.config import IngestConfig
from tasks.errors import ConfigurationError, EpisodeInputError
from tasks.extract.decode import Decode
from tasks.extract.depth import Depth
from tasks.extract.entities import Entities
from tasks.extract.keypoints import Keypoints
from tasks.extract.lift import Lift
from tasks.extract.motion_filter import MotionFilter
from tasks.extract.pose import Pose
from tasks.extract.rows import episode_tables, frame_rows, sample_rows
from tasks.extract.samples import BuildSamples
from tasks.extract.spill import remove_spill
from tasks.extract.track import Track
from tasks.stage import Resources, Stage, resources_of, warm_all
from tasks.types import Episode, EpisodeSource

StageRun = Callable[[Episode, object], Episode]  # what runs one stage: `stage.run`, or a model actor's proxy

# The pipeline, in order (docs/method.md#traceextract).
STAGES: list[Stage] = [
    Decode(), Depth(), Pose(), Keypoints(), Track(), Lift(), MotionFilter(), Entities(), BuildSamples(), Captioning()
]
_EXPECTED = (EpisodeInputError, ConfigurationError)


def schemas(cfg: IngestConfig) -> dict[str, pa.Schema]:
    return table_schemas(cfg.retarget.future_len, cfg.retarget.history_len)


def episode_resources(cfg: IngestConfig) -> Resources:
    """The most any one stage of `cfg` reserves (stages run one after another): whether a run uses GPUs.

    The sequential runner's process is that worker; on Ray the model stages' GPUs go to their actor
    pools instead and an episode's task reserves the rest (`ray_runner.task_resources`).
    """
    return resources_of(STAGES, cfg)


def model_stages(cfg: IngestConfig) -> list[Stage]:
    """The stages that run a model under `cfg` (the Ray runner gives each an actor pool)."""
    return [s for s in STAGES if s.uses_model(s.settings(cfg))]


def warm_models(cfg: IngestConfig, skip: Collection[str] = ()) -> None:
    """Load the models `cfg`'s stages use into this process's caches (a worker does it once).

    Model loading is set-up, like starting the worker: done before a run's clock starts, it is
    not paid again by every episode, nor by two workers racing for the same cores mid-run.
    `skip` names stages whose models live elsewhere (on the Ray runner's model actors).
    """
    warm_all([s for s in STAGES if s.name not in skip], cfg)


class StageFailed(Exception):
    """A stage run elsewhere (on a model actor) failed; the message is already the episode's error text."""


def stage_error(src: EpisodeSource, exc: Exception) -> str:
    """The `errors[stage]` text for an exception: expected refusals as they are, bugs with type and place."""
    if isinstance(exc, (*_EXPECTED, StageFailed)):
        return str(exc)
    where = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{src.uri}: {type(exc).__name__}: {exc} (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})"


def run_stages(
    src: EpisodeSource,
    cfg: IngestConfig,
    stages: list[Stage] = STAGES,
    after: Callable[[str, Episode], None] | None = None,
    runners: Mapping[str, StageRun] | None = None,
) -> Episode:
    """Run stages in order; an exception becomes `errors[stage]` and status "failed", never a crash.

    Every stage's precheck runs first, so a source the settings cannot handle is refused before
    anything is decoded. `after(name, ep)` is called when a stage succeeds (side work starts there).
    `runners[name]` replaces `stage.run` for that stage (the Ray runner's model actors).
    """
    runners = runners or {}
    ep = Episode(source=src)
    settings = [stage.settings(cfg) for stage in stages]
    for stage, s in zip(stages, settings):
        try:
            stage.precheck(src, s)
        except _EXPECTED as exc:
            return ep.replace(status="failed", errors={stage.name: str(exc)})
    for stage, s in zip(stages, settings):
        fault_point(f"stage:{stage.name}")
        t0 = time.perf_counter()
        try:
            ep = runners.get(stage.name, stage.run)(ep, s)
        except Exception as exc:  # noqa: BLE001 - any stage bug must not stop the other episodes
            return ep.replace(status="failed", errors={**ep.errors, stage.name: stage_error(src, exc)})
        ep.timings[stage.name] = time.perf_counter() - t0
        if after is not None:
            after(stage.name, ep)
        if ep.status != "ok":
            break
    return ep


@dataclass
class EpisodeResult:
    """What a worker sends back: a summary and the fragment metadata to commit (small, picklable)."""

    episode_id: str
    source_uri: str
    status: str
    errors: dict[str, str]
    n_frames: int = 0
    n_tracks: int = 0
    n_samples: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    fragments: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, ep: Episode, fragments: dict[str, list[str]], timings: dict[str, float] | None = None) -> "EpisodeResult":
        return cls(
            episode_id=ep.source.episode_id,
            source_uri=ep.source.uri,
            status=ep.status,
            errors=dict(ep.errors),
            n_frames=ep.n_frames,
            n_tracks=ep.n_tracks,
            n_samples=ep.n_samples,
            timings=dict(timings or {}),
            fragments=fragments,
        )

    @property
    def error_text(self) -> str:
        return "; ".join(f"{k}: {v}" for k, v in self.errors.items())


def write_episode(
    ep: Episode, cfg: IngestConfig, root: str, written: dict[str, list[str]] | None = None
) -> dict[str, list[str]]:
    """Rows of one episode as uncommitted fragments, per table (`written`: tables done ahead)."""
    done = dict(written or {}) if ep.status != "failed" else {}  # a failed episode keeps its episodes row only
    sch = schemas(cfg)
    for name, rows in episode_tables(ep, cfg, skip=(*done, *BLOCKED)).items():
        if rows.num_rows:
            done[name] = write_uncommitted(root, name, rows, sch[name])
    for name in BLOCKED:
        if name not in done and (frags := write_blocks(name, ep, cfg, root)):
            done[name] = frags
    return done


def write_blocks(name: str, ep: Episode, cfg: IngestConfig, root: str) -> list[str]:
    """A table that grows with the episode (`BLOCKED`), FRAME_BLOCK frames per fragment: a long episode's encoded
    frames, or its samples as Arrow rows, are never all in memory at once."""
    rows_of, count = BLOCKED[name]
    n = count(ep) if ep.status != "failed" else 0
    frags: list[str] = []
    for lo in range(0, n, FRAME_BLOCK):
        rows = rows_of(ep, cfg, lo, min(lo + FRAME_BLOCK, n))
        if rows.num_rows:
            frags += write_uncommitted(root, name, rows, schemas(cfg)[name])
    return frags


FRAMES_READY_AFTER = "pose"  # frames and depth are final once poses are known
FRAME_BLOCK = 1024  # frames per `frames` or `samples` fragment (JPEG + 16-bit PNG: some 10-100 MB at 640x360)
BLOCKED = {  # tables written a block of frames at a time: rows of [lo, hi), and how many frames there are
    "frames": (frame_rows, lambda ep: ep.n_frames),
    "samples": (sample_rows, lambda ep: ep.samples.n_frames if ep.samples is not None else 0),
}


def process_episode(
    src: EpisodeSource,
    cfg: IngestConfig,
    root: str,
    overlap_writes: bool = True,
    runners: Mapping[str, StageRun] | None = None,
) -> EpisodeResult:
    """Extract one episode and write its fragments. Never raises for bad input.

    With `overlap_writes`, the `frames` table (JPEG + 16-bit PNG encoding and its Lance write, the
    costliest part of writing) is done on a side thread while tracking runs: OpenCV and Lance
    release the GIL, so a spare core overlaps the two instead of paying for both in turn. Without
    a spare core (every core runs an episode) the thread only competes with the other workers, so
    callers turn it off there. If a later stage fails, that fragment is never committed (nothing
    partial reaches the dataset). `runners` as for `run_stages`.
    """
    t0 = time.perf_counter()
    pending: dict[str, Future] = {}
    side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write-frames") if overlap_writes else None
    with side or contextlib.nullcontext():

        def write_frames_ahead(stage: str, ep: Episode) -> None:
            if side is not None and stage == FRAMES_READY_AFTER and ep.status == "ok":
                pending["frames"] = side.submit(write_blocks, "frames", ep, cfg, root)

        ep = run_stages(src, cfg, after=write_frames_ahead, runners=runners)
        t1 = time.perf_counter()
        try:
            written = {name: f.result() for name, f in pending.items()}
            frags = write_episode(ep, cfg, root, written)
        finally:
            remove_spill(ep.spill_dir)
    timings = {**ep.timings, "write": time.perf_counter() - t1, "total": time.perf_counter() - t0}
    return EpisodeResult.of(ep, frags, timings)


def failed_result(src: EpisodeSource, cfg: IngestConfig, root: str, stage: str, message: str) -> EpisodeResult:
    """A worker died (e.g. out of memory): the driver still records the episode as failed."""
    ep = Episode(source=src, status="failed", errors={stage: message})
    return EpisodeResult.of(ep, write_episode(ep, cfg, root))


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset restrict)."""
    return len(os.sched_getaffinity(0))


def stages_until(name: str) -> list[Stage]:
    """The pipeline's first stages, up to and including `name` (scoring and benchmarks stop early)."""
    names = [s.name for s in STAGES]
    if name not in names:
        raise ValueError(f"no stage {name!r}; stages are {', '.join(names)}")
    return STAGES[: names.index(name) + 1]

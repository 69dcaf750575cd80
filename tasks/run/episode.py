"""Run the extraction stages over one episode, recording failures as data, and hand back fragments.

`process_episode` is the unit of work a Ray worker (or the sequential runner) executes: it runs the
stages, converts the episode to table rows and writes them as *uncommitted* Lance fragments. The
driver commits all fragments once per table, so a crash before the commit leaves no partial rows.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from storage import schema as table_schemas
from storage.writer import write_uncommitted
from tasks.config import IngestConfig
from tasks.captions.caption import caption
from tasks.extract.decode import decode
from tasks.extract.depth import estimate_depth
from tasks.extract.entities import group_entities
from tasks.errors import ConfigurationError, EpisodeInputError
from tasks.extract.lift import lift
from tasks.extract.motion_filter import filter_tracks
from tasks.extract.pose import estimate_poses
from tasks.extract.rows import episode_tables, frame_rows
from tasks.extract.samples import build_samples
from tasks.extract.track import track
from tasks.types import Episode, EpisodeSource

Stage = Callable[[Episode, IngestConfig], Episode]

STAGES: list[tuple[str, Stage]] = [
    ("decode", lambda ep, cfg: decode(ep.source, cfg)),
    ("depth", estimate_depth),
    ("pose", estimate_poses),
    ("track", track),
    ("lift", lambda ep, cfg: lift(ep, cfg.lift)),
    ("filter", lambda ep, cfg: filter_tracks(ep, cfg.filter)),
    ("entities", group_entities),
    ("samples", lambda ep, cfg: build_samples(ep, cfg.retarget)),
    ("captions", caption),
]
TABLES = ("episodes", "tracks", "samples", "frames", "captions")
_EXPECTED = (EpisodeInputError, ConfigurationError)


def schemas(cfg: IngestConfig) -> dict[str, pa.Schema]:
    return {
        "episodes": table_schemas.EPISODES,
        "tracks": table_schemas.TRACKS,
        "samples": table_schemas.samples_schema(cfg.retarget.future_len, cfg.retarget.history_len),
        "frames": table_schemas.FRAMES,
        "captions": table_schemas.CAPTIONS,
    }


def warm_models(cfg: IngestConfig) -> None:
    """Load the models `cfg`'s stages use into this process's caches (a worker does it once).

    Model loading is set-up, like starting the worker: done before a run's clock starts, it is
    not paid again by every episode, nor by two workers racing for the same cores mid-run.
    """
    if cfg.captions.backend != "off":
        from models.text_embedder import load_embedder

        load_embedder()
    if cfg.depth.backend == "depth-anything":
        from models.depth_anything import load_depth_anything

        try:
            load_depth_anything(cfg.depth.model, cfg.depth.device)
        except Exception:  # noqa: BLE001 - a missing model is reported per episode, as data
            pass


def run_stages(
    src: EpisodeSource,
    cfg: IngestConfig,
    stages: Iterable[tuple[str, Stage]] = STAGES,
    after: Callable[[str, Episode], None] | None = None,
) -> Episode:
    """Run stages in order; an exception becomes `errors[stage]` and status "failed", never a crash.

    `after(name, ep)` is called when a stage succeeds (the runner starts side work there).
    """
    ep = Episode(source=src)
    for name, stage in stages:
        t0 = time.perf_counter()
        try:
            ep = stage(ep, cfg)
        except _EXPECTED as exc:
            return ep.replace(status="failed", errors={**ep.errors, name: str(exc)})
        except Exception as exc:  # noqa: BLE001 - any stage bug must not stop the other episodes
            where = traceback.extract_tb(exc.__traceback__)[-1]
            msg = f"{src.uri}: {type(exc).__name__}: {exc} (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
            return ep.replace(status="failed", errors={**ep.errors, name: msg})
        ep.timings[name] = time.perf_counter() - t0
        if after is not None:
            after(name, ep)
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
    for name, rows in episode_tables(ep, cfg, skip=tuple(done)).items():
        if rows.num_rows:
            done[name] = write_uncommitted(root, name, rows, sch[name])
    return done


FRAMES_READY_AFTER = "pose"  # frames and depth are final once poses are known


def process_episode(src: EpisodeSource, cfg: IngestConfig, root: str, overlap_writes: bool = True) -> EpisodeResult:
    """Extract one episode and write its fragments. Never raises for bad input.

    With `overlap_writes`, the `frames` table (JPEG + 16-bit PNG encoding and its Lance write, the
    costliest part of writing) is done on a side thread while tracking runs: OpenCV and Lance
    release the GIL, so a spare core overlaps the two instead of paying for both in turn. Without
    a spare core (every core runs an episode) the thread only competes with the other workers, so
    callers turn it off there. If a later stage fails, that fragment is never committed (nothing
    partial reaches the dataset).
    """
    t0 = time.perf_counter()
    pending: dict[str, Future] = {}
    side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write-frames") if overlap_writes else None
    with side or contextlib.nullcontext():

        def write_frames_ahead(stage: str, ep: Episode) -> None:
            if side is not None and stage == FRAMES_READY_AFTER and ep.status == "ok":
                pending["frames"] = side.submit(_frames_fragment, ep, cfg, root)

        ep = run_stages(src, cfg, after=write_frames_ahead)
        t1 = time.perf_counter()
        written = {name: f.result() for name, f in pending.items()}
        frags = write_episode(ep, cfg, root, written)
    timings = {**ep.timings, "write": time.perf_counter() - t1, "total": time.perf_counter() - t0}
    return EpisodeResult.of(ep, frags, timings)


def _frames_fragment(ep: Episode, cfg: IngestConfig, root: str) -> list[str]:
    return write_uncommitted(root, "frames", frame_rows(ep, cfg), schemas(cfg)["frames"])


def failed_result(src: EpisodeSource, cfg: IngestConfig, root: str, stage: str, message: str) -> EpisodeResult:
    """A worker died (e.g. out of memory): the driver still records the episode as failed."""
    ep = Episode(source=src, status="failed", errors={stage: message})
    return EpisodeResult.of(ep, write_episode(ep, cfg, root))


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset restrict)."""
    return len(os.sched_getaffinity(0))


def extract_sequential(
    sources: list[EpisodeSource], cfg: IngestConfig, root: str, on_result: Callable[[EpisodeResult], None] | None = None
) -> list[EpisodeResult]:
    """The same work as the Ray runner, in this process (tests, one video, debugging)."""
    results = []
    for src in sources:
        res = process_episode(src, cfg, root, overlap_writes=usable_cores() > 1)
        results.append(res)
        if on_result:
            on_result(res)
    return results

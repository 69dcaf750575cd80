"""Long episodes spill their per-pixel arrays to disk (tasks/extract/spill.py): the rows are those of an episode held in
memory, the files go when the episode is written (or refused), and a spilled array travels to a Ray actor as its
path. `decode.spill_mb=0` spills every episode, so the short sim episodes exercise every stage's block loop."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from models.depth_anything import save_random_depth_anything
from storage.dataset import open_table
from storage.writer import commit_run
from tasks.config import get_preset, with_overrides
from tasks.extract.spill import FrameSink, SpilledArray, new_spill_dir, release
from tasks.run import episode as episode_module
from tasks.run.discover import discover
from tasks.run.episode import process_episode, run_stages, stages_until
from tasks.run.ray_runner import RayRunner
from tasks.run.ingest import ingest
from tasks.types import EpisodeSource
from tests.tasks.extract.test_hostile_inputs import write_video
from tests.tasks.run.test_episode import same_bits

TABLES = ("episodes", "tracks", "samples", "frames")


@pytest.fixture(scope="module")
def tiny_depth(tmp_path_factory):
    return str(save_random_depth_anything(tmp_path_factory.mktemp("depth-anything-tiny")))


def stored(root: str) -> dict:
    """Every table's rows; the frames table as its decoded blobs per (episode, frame) (blob positions depend on how
    the rows were split into fragments)."""
    out = {name: open_table(root, name).to_table().drop_columns(["ingested_at", "config"] if name == "episodes" else [])
           for name in TABLES if name != "frames"}
    frames = open_table(root, "frames")
    keys = [(r["episode_id"], r["frame"]) for r in frames.to_table(columns=["episode_id", "frame"]).to_pylist()]
    rows = list(range(len(keys)))
    blobs = zip(frames.take_blobs("jpeg", indices=rows), frames.take_blobs("depth_png16", indices=rows))
    out["frames"] = {k: (j.read(), d.read()) for k, (j, d) in zip(keys, blobs)}
    return out


def same_rows(a, b) -> bool:
    return a == b if isinstance(a, dict) else same_bits(a, b)


def ingest_one(src, cfg, root: str) -> dict:
    res = process_episode(src, cfg, root, overlap_writes=True)
    assert res.status == "ok" and res.n_frames > 0, res.errors
    commit_run(root, {res.episode_id: res.fragments}, tag="one")
    return stored(root)


@pytest.mark.parametrize("over", [
    {},  # given depth and cameras: decode's depth.npy, grey, cleaned depth, tracking, lifting, rows
    {"pose.backend": "open3d"},  # estimated cameras read the frames and depth a frame at a time
    {"depth.backend": "depth-anything"},  # predicted depth, median-scaled to the given depth
], ids=["given", "open3d", "depth-anything"])
def test_a_spilled_episode_stores_the_rows_of_one_held_in_memory(sim_corpus, tiny_depth, tmp_path, monkeypatch, over):
    cfg = with_overrides(get_preset("sim"), {"captions.backend": "off", "depth.model": tiny_depth, **over})
    src = discover(str(sim_corpus), cfg)[0]
    held = ingest_one(src, cfg, str(tmp_path / "memory"))
    spill_root = tmp_path / "spill"
    spilled_cfg = with_overrides(cfg, {"decode.spill_mb": 0, "decode.spill_dir": str(spill_root)})
    monkeypatch.setattr(episode_module, "FRAME_BLOCK", 7)  # the frames table in fragments of 7 frames
    spilled = ingest_one(src, spilled_cfg, str(tmp_path / "spilled"))
    for name in TABLES:
        assert len(held[name]) > 0, name
        assert same_rows(held[name], spilled[name]), name
    assert spill_root.is_dir() and not any(spill_root.iterdir())  # the episode's files went once it was written


def test_the_stages_see_spilled_arrays(sim_corpus, tmp_path):
    cfg = with_overrides(get_preset("sim"), {"captions.backend": "off", "decode.spill_mb": 0,
                                             "decode.spill_dir": str(tmp_path)})
    ep = run_stages(discover(str(sim_corpus), cfg)[0], cfg, stages_until("track"))
    assert ep.status == "ok" and ep.spill_dir.startswith(str(tmp_path))
    assert all(isinstance(a, SpilledArray) for a in (ep.frames, ep.depth, ep.clean_depth))
    assert {p.name.split("-")[0] for p in (tmp_path / ep.spill_dir).iterdir()} >= {"frames.bin", "depth", "gray"}


def test_a_refused_video_leaves_no_spill_files(tmp_path):
    path = write_video(tmp_path / "zeroed.mp4", n=40, options={"movflags": "faststart"})
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
    path.write_bytes(bytes(data))
    spill_root = tmp_path / "spill"
    cfg = with_overrides(get_preset("sim"), {"depth.backend": "depth-anything", "decode.spill_mb": 0,
                                             "decode.spill_dir": str(spill_root)})
    ep = run_stages(EpisodeSource(uri=str(path), episode_id="zeroed", kind="video"), cfg, stages_until("decode"))
    assert ep.status == "failed" and "truncated" in ep.errors["decode"]
    assert spill_root.is_dir() and not any(spill_root.iterdir())


def test_frames_go_to_a_file_once_they_pass_the_limit_and_pickle_as_its_path(tmp_path):
    frame = np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)
    sink = FrameSink(limit_bytes=2.5 * frame.nbytes, spill_root=str(tmp_path))
    for i in range(5):
        sink.append(frame + i)
        assert bool(sink.spill_dir) == (i >= 2)  # the third frame passes the limit
    arr = sink.finish()
    assert isinstance(arr, SpilledArray) and arr.shape == (5, 48, 64, 3)
    assert all((arr[i] == frame + i).all() for i in range(5))
    arr[3] = 7
    release(arr)  # pages dropped from this process; what was written is still there
    assert (arr[3] == 7).all() and (arr[4] == frame + 4).all()
    assert len(pickle.dumps(arr)) < 1000  # the path, not 46 KB of pixels
    back = pickle.loads(pickle.dumps(arr))
    assert np.array_equal(back, arr) and (back[3] == 7).all()
    assert len(pickle.dumps(arr[1:3])) > 2 * frame.nbytes  # a slice is sent as its bytes
    small = FrameSink(limit_bytes=10 * frame.nbytes, spill_root=str(tmp_path / "none"))
    small.append(frame)
    assert type(small.finish()) is np.ndarray and not small.spill_dir


@pytest.mark.slow
def test_a_ray_depth_actor_reads_and_writes_the_spilled_files(local_ray, sim_corpus, tiny_depth, tmp_path):
    cfg = with_overrides(get_preset("sim"), {"captions.backend": "off", "depth.backend": "depth-anything",
                                             "depth.model": tiny_depth})
    spill_root = tmp_path / "spill"
    spilled_cfg = with_overrides(cfg, {"decode.spill_mb": 0, "decode.spill_dir": str(spill_root)})
    one = tmp_path / "one"
    one.mkdir()
    first = sorted(p for p in sim_corpus.iterdir() if p.is_dir())[0]
    (one / first.name).symlink_to(first)
    for name, c in (("memory", cfg), ("spilled", spilled_cfg)):  # both on actors: the same threads, the same depth
        runner = RayRunner(actors_per_model=1)
        try:
            rep = ingest(str(one), str(tmp_path / name), c, runner=runner)
        finally:
            runner.close()
        assert rep.ok == 1, rep.failures
    a, b = stored(str(tmp_path / "memory")), stored(str(tmp_path / "spilled"))
    for name in TABLES:
        assert len(a[name]) > 0 and same_rows(a[name], b[name]), name
    assert spill_root.is_dir() and not any(spill_root.iterdir())


@pytest.mark.slow
def test_an_actor_on_another_node_gets_the_arrays_not_their_paths(local_ray, sim_corpus, tiny_depth, tmp_path):
    """A pooled stage whose actor is on another node (faked: an unknown node id) sends the arrays through the
    object store; the rows are the same and the episode keeps its spill directory (removed after writing)."""
    from tasks.run.model_pools import ModelPools, PooledStage, pool_specs

    cfg = with_overrides(get_preset("sim"), {"captions.backend": "off", "depth.backend": "depth-anything",
                                             "depth.model": tiny_depth, "decode.spill_mb": 0,
                                             "decode.spill_dir": str(tmp_path / "spill")})
    pools = ModelPools(pool_specs(cfg, 1, 0, 1), cfg)
    try:
        assert pools.wait_ready()[0]["node"]
        here = pools.runners(0)["depth"]
        far = PooledStage("depth", here.actor, node="another-node")
        src = discover(str(sim_corpus), cfg)[0]
        eps = [run_stages(src, cfg, stages_until("depth"), runners={"depth": r}) for r in (here, far)]
    finally:
        pools.close()
    for ep in eps:
        assert ep.status == "ok" and ep.spill_dir and isinstance(ep.frames, SpilledArray), ep.errors
    assert isinstance(eps[0].depth, SpilledArray) and not isinstance(eps[1].depth, SpilledArray)
    assert np.array_equal(eps[0].depth, eps[1].depth, equal_nan=True)


def test_the_files_of_a_worker_that_died_go_with_the_next_spilled_episode(tmp_path):
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"mu0-spill-{gone.stdout.strip()}-abcd"  # a worker killed mid-episode left this
    dead.mkdir()
    (dead / "frames.bin").write_bytes(b"x" * 100)
    mine = tmp_path / f"mu0-spill-{os.getpid()}-efgh"  # this process's: still in use
    mine.mkdir()
    new = new_spill_dir(str(tmp_path))
    assert not dead.exists() and mine.is_dir() and Path(new).is_dir() and new != str(mine)

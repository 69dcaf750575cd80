"""Model actor pools on Ray: a model-backed stage runs on actors that load the model once and serve every episode.

Real ingests of two short sim episodes with predicted depth (a tiny random Depth Anything saved with
save_pretrained), through the Ray runner and through the sequential one, compared row by row.
"""

from __future__ import annotations

import numpy as np
import pytest
import ray

from models.depth_anything import load_depth_anything, save_random_depth_anything
from storage.dataset import open_table
from storage.frame_codec import decode_depth_png16
from tasks.config import get_preset, with_overrides
from tasks.run.episode import warm_models
from tasks.run.ingest import ingest
from tasks.run.model_pools import pool_specs
from tasks.run.ray_runner import NoGPUError, RayRunner, task_resources


@pytest.fixture(scope="module")
def tiny_depth(tmp_path_factory):
    return str(save_random_depth_anything(tmp_path_factory.mktemp("depth-anything-tiny")))


@pytest.fixture(scope="module")
def two_episodes(sim_corpus, tmp_path_factory):
    """Two of the sim corpus's episodes (links): enough for a pool to serve several episodes, half the time."""
    out = tmp_path_factory.mktemp("two")
    for d in sorted(p for p in sim_corpus.iterdir() if p.is_dir())[:2]:
        (out / d.name).symlink_to(d)
    return out


def predicted(model: str, **over):
    return with_overrides(get_preset("sim"), {
        "captions.backend": "off", "depth.backend": "depth-anything", "depth.model": model, **over
    })


def episode_rows(root: str) -> dict[str, dict]:
    rows = open_table(root, "episodes").to_table(columns=["episode_id", "status", "errors", "depth_scale_ratio"])
    return {r["episode_id"]: r for r in rows.to_pylist()}


def depth_mm(root: str) -> dict[tuple[str, int], np.ndarray]:
    frames = open_table(root, "frames")
    keys = frames.to_table(columns=["episode_id", "frame"]).to_pylist()
    blobs = frames.take_blobs("depth_png16", indices=list(range(len(keys))))
    return {(k["episode_id"], k["frame"]): decode_depth_png16(b.read()) for k, b in zip(keys, blobs)}


def test_depth_runs_on_actors_that_load_the_model_once_each(local_ray, two_episodes, tiny_depth, tmp_path):
    cfg = predicted(tiny_depth)
    assert task_resources(cfg).gpus == 0
    before = load_depth_anything.cache_info().misses
    warm_models(cfg, skip={"depth"})  # what an episode task warms: not the pooled model
    assert load_depth_anything.cache_info().misses == before
    seq_root, ray_root = str(tmp_path / "seq"), str(tmp_path / "ray")
    seq = ingest(str(two_episodes), seq_root, cfg)
    runner = RayRunner(actors_per_model=2)
    try:
        rep = ingest(str(two_episodes), ray_root, cfg, runner=runner)
        info = runner.pools.info()
        loads = ray.get([a.__ray_call__.remote(lambda _: load_depth_anything.cache_info().misses)
                         for a in runner.pools.actors["depth"]])
    finally:
        runner.close()
    assert rep.attempted == seq.attempted == 2 and rep.ok == seq.ok, (rep.failures, seq.failures)
    assert [(i["stage"], i["load_error"], i["calls"]) for i in info] == [("depth", "", 1)] * 2  # round-robin
    assert len({i["pid"] for i in info}) == 2 and loads == [1, 1]  # two processes, each loaded the model once
    a, b = episode_rows(seq_root), episode_rows(ray_root)
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k]["status"], a[k]["errors"]) == (b[k]["status"], b[k]["errors"])
        assert a[k]["depth_scale_ratio"] == pytest.approx(b[k]["depth_scale_ratio"], rel=1e-5)
    da, db = depth_mm(seq_root), depth_mm(ray_root)
    assert da.keys() == db.keys() and len(da) > 0
    for k in da:  # stored as rounded mm: a last-bit difference may flip one rounding
        assert np.abs(da[k].astype(np.int64) - db[k].astype(np.int64)).max() <= 1, k


def test_a_model_that_cannot_load_fails_each_episode_with_the_load_message(local_ray, two_episodes, tmp_path):
    cfg = predicted(str(tmp_path / "no-such-model"))
    seq = ingest(str(two_episodes), str(tmp_path / "seq"), cfg)
    runner = RayRunner(actors_per_model=1)
    try:
        rep = ingest(str(two_episodes), str(tmp_path / "ray"), cfg, runner=runner)
        (info,) = runner.pools.info()
    finally:
        runner.close()
    assert "no-such-model" in info["load_error"]
    assert rep.failed == rep.attempted == 2
    assert sorted(f.error for f in rep.failures) == sorted(f.error for f in seq.failures)
    assert all(f.error.startswith("depth: depth model directory") and "no-such-model" in f.error for f in rep.failures)


def test_an_actor_that_dies_fails_the_episodes_that_called_it(local_ray, two_episodes, tiny_depth, tmp_path,
                                                               monkeypatch):
    monkeypatch.setenv("MU0_FAULT", "kill@actor:depth")  # the actor kills itself on every call
    runner = RayRunner(actors_per_model=1, retries=0)
    try:
        rep = ingest(str(two_episodes), str(tmp_path / "ray"), predicted(tiny_depth), runner=runner)
    finally:
        runner.close()
    assert rep.failed == rep.attempted == 2
    assert all(f.error.startswith("depth: ") and "the depth model actor died" in f.error for f in rep.failures)


@pytest.mark.slow
def test_a_dead_actor_is_restarted_and_its_episode_retried(local_ray, two_episodes, tiny_depth, tmp_path, monkeypatch):
    monkeypatch.setenv("MU0_FAULT", "kill@actor:depth")
    monkeypatch.setenv("MU0_FAULT_ONCE", str(tmp_path / "killed-once"))
    runner = RayRunner(actors_per_model=1, retries=1)
    try:
        rep = ingest(str(two_episodes), str(tmp_path / "ray"), predicted(tiny_depth), runner=runner)
        (info,) = runner.pools.info()
    finally:
        runner.close()
    assert (tmp_path / "killed-once").exists()  # the actor really died
    assert rep.failed == 0 and rep.ok == 2, rep.failures
    assert info["calls"] == 2  # the restarted actor (model loaded again) ran both


def test_gpus_asked_for_model_actors_but_missing_fail_at_once(local_ray, tiny_depth):
    with pytest.raises(NoGPUError, match=r"model actors reserve 0.5 GPU \(depth: 1 actor x 0.5 GPU\) but the Ray "
                       r"cluster has 0.*--set depth.gpus=0"):
        RayRunner().start(predicted(tiny_depth, **{"depth.gpus": 0.5}))


def test_pools_are_sized_by_the_gpus_one_of_each_model_needs():
    both = predicted("m", **{"depth.gpus": 0.5, "track.backend": "cotracker", "track.gpus": 1.0})
    specs = [(p.stage, p.gpus, p.actors) for p in pool_specs(both, None, 8, 100)]
    assert specs == [("depth", 0.5, 5), ("track", 1.0, 5)]  # 5 x (0.5 + 1) GPUs fit in 8
    assert {p.actors for p in pool_specs(both, None, 8, 2)} == {2}  # no more actors than episodes at once
    assert {p.actors for p in pool_specs(both, None, 0, 2)} == {1}  # too few GPUs: check_gpus says so
    assert {p.actors for p in pool_specs(both, 3, 8, 2)} == {3}  # asked for
    assert {p.actors for p in pool_specs(predicted("m"), None, 8, 100)} == {1}  # a model on CPU: one actor
    assert pool_specs(get_preset("sim"), None, 8, 100) == []  # classical stages only: no pools


@pytest.mark.slow
def test_two_pools_depth_and_dino_give_the_sequential_runners_tracks(local_ray, two_episodes, tiny_depth, tmp_path):
    from models.dino_patches import save_random_dinov2

    dino = str(save_random_dinov2(tmp_path / "dinov2-tiny"))
    cfg = predicted(tiny_depth, **{
        "keypoints.backend": "dino", "keypoints.dino.model": dino, "keypoints.dino.device": "cpu",
        "keypoints.dino.input_size": 112, "filter.min_track_coverage": 0.0,  # random DINO: coverage is not the point
    })
    seq = ingest(str(two_episodes), str(tmp_path / "seq"), cfg)
    runner = RayRunner()
    try:
        rep = ingest(str(two_episodes), str(tmp_path / "ray"), cfg, runner=runner)
        info = runner.pools.info()
    finally:
        runner.close()
    assert sorted((i["stage"], i["calls"]) for i in info) == [("depth", 2), ("keypoints", 2)]
    assert (rep.ok, rep.tracks, rep.samples) == (seq.ok, seq.tracks, seq.samples) and rep.ok == 2, rep.failures


def test_dino_actors_reserve_the_gpus_its_setting_names():
    from tasks.extract.keypoints import Keypoints
    from tasks.run.model_pools import pool_specs

    cfg = with_overrides(get_preset("sim"), {"keypoints.backend": "dino", "keypoints.dino.gpus": 0.25})
    stage = Keypoints()
    assert stage.uses_model(stage.settings(cfg)) and stage.resources(stage.settings(cfg)).gpus == 0.25
    cfg = with_overrides(cfg, {"depth.backend": "depth-anything"})
    specs = {p.stage: (p.gpus, p.gpu_setting) for p in pool_specs(cfg, 1, 0.0, 1)}
    assert specs == {"depth": (cfg.depth.gpus, "depth.gpus"), "keypoints": (0.25, "keypoints.dino.gpus")}
    for stage_name, (_, key) in specs.items():  # the key a refusal names is the one that sets the pool's GPUs
        raised = with_overrides(cfg, {key: 0.5})
        assert {p.stage: p.gpus for p in pool_specs(raised, 1, 0.0, 1)}[stage_name] == 0.5

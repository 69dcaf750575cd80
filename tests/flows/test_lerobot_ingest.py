"""`mu0 ingest ROOT --camera KEY --episodes ...` on the shared LeRobot v3 fixture, end to end.

The depth model is a tiny random Depth Anything saved with save_pretrained (meaningless values, real code
path). The fixture's flat synthetic frames give open3d few corners, so the test lets pose registration
lose frames and keeps low-coverage episodes: it is about what a LeRobot episode becomes, not trace quality.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app
from models.depth_anything import save_random_depth_anything
from storage import query
from storage.check import check_dataset
from storage.dataset import open_table
from storage.demonstrations import read_demonstrations
from tests.lerobot_fixture import (
    FRONT, LENGTHS, TASKS, WRIST, action, add_depth_column, depth_mm, fixture_root, state, writable_copy,
)

runner = CliRunner()
LENIENT = ["--set", "pose.max_lost_frac=1", "--set", "filter.min_track_coverage=0", "--captions", "off"]


def text(res) -> str:
    return " ".join(res.output.replace("│", " ").split())


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(save_random_depth_anything(tmp_path_factory.mktemp("depth-anything-tiny")))


def ingest(dataset, tiny_model, *extra):
    args = ["ingest", str(fixture_root()), "--dataset", str(dataset), "--sequential", "--depth", "depth-anything",
            "--depth-model", tiny_model, "--pose", "open3d", *LENIENT, *extra]
    return runner.invoke(app, args)


def test_each_lerobot_episode_becomes_an_episode_with_its_demonstration(prefect_harness, tiny_model, tmp_path):
    dataset = tmp_path / "ds"
    res = ingest(dataset, tiny_model, "--camera", FRONT)
    assert res.exit_code == 0, res.output
    rows = sorted(query.episodes(str(dataset)).to_pylist(), key=lambda r: r["source_uri"])
    assert [r["source_uri"] for r in rows] == [f"{fixture_root().resolve()}#episode={e}&camera={FRONT}" for e in range(3)]  # ids and uris use the resolved root
    assert [r["status"] for r in rows] == ["ok"] * 3, [r["errors"] for r in rows]
    assert [r["n_frames"] for r in rows] == list(LENGTHS) and [r["instruction"] for r in rows] == list(TASKS)
    assert {(r["width"], r["height"], r["depth_source"], r["pose_source"]) for r in rows} == {(128, 96, "depth-anything", "open3d")}
    demos = read_demonstrations(str(dataset))
    for e, r in enumerate(rows):
        d = demos[r["episode_id"]]
        assert d.source_episode_index == e and d.instruction == TASKS[e] and d.fps == 10.0
        assert np.array_equal(d.states, np.stack([state(e, f) for f in range(LENGTHS[e])]))
        assert np.array_equal(d.actions, np.stack([action(e, f) for f in range(LENGTHS[e])]))
        assert np.array_equal(d.frames, np.arange(LENGTHS[e]))
    assert open_table(str(dataset), "demonstrations").count_rows() == sum(LENGTHS)
    assert [f.check for f in check_dataset(str(dataset)) if not f.ok] == []

    again = ingest(dataset, tiny_model, "--camera", FRONT)  # resume: nothing new, nothing twice
    assert again.exit_code == 0 and len(query.episodes(str(dataset))) == 3
    assert open_table(str(dataset), "demonstrations").count_rows() == sum(LENGTHS)


def test_a_depth_feature_is_ingested_as_given_depth(prefect_harness, tmp_path):
    root = add_depth_column(writable_copy(tmp_path / "robot"))
    dataset = tmp_path / "ds"
    args = ["ingest", str(root), "--dataset", str(dataset), "--sequential", "--depth", "given", "--pose", "open3d",
            "--set", "lerobot.depth_scale=0.001", *LENIENT]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = sorted(query.episodes(str(dataset)).to_pylist(), key=lambda r: r["source_uri"])
    assert [(r["status"], r["depth_source"], r["n_frames"]) for r in rows] == [("ok", "given", n) for n in LENGTHS], rows
    for e, r in enumerate(rows):  # the stored depth frames are the feature's, to the millimetre
        png = query.frame_blobs(str(dataset), r["episode_id"], [0, 2], "depth_png16")
        stored = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED) for b in png]
        assert [np.array_equal(d, depth_mm(e, f)) for d, f in zip(stored, (0, 2))] == [True, True], e


def test_selected_episodes_of_another_camera(prefect_harness, tiny_model, tmp_path):
    dataset = tmp_path / "ds"
    res = ingest(dataset, tiny_model, "--set", f"lerobot.camera={WRIST}", "--episodes", "2,0")
    assert res.exit_code == 0, res.output
    rows = query.episodes(str(dataset)).to_pylist()
    assert sorted((r["source_uri"].rsplit("#", 1)[1], r["n_frames"], r["width"]) for r in rows) == [
        (f"episode=0&camera={WRIST}", 25, 64), (f"episode=2&camera={WRIST}", 20, 64)
    ]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--camera", "observation.images.top"], ["no camera 'observation.images.top'", FRONT, WRIST]),
        (["--episodes", "0,x"], ["--episodes", "0,3,7"]),
    ],
)
def test_refusals_exit_2_with_one_sentence(prefect_harness, tiny_model, tmp_path, extra, words):
    res = ingest(tmp_path / "ds", tiny_model, *extra)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert all(w in text(res) for w in words), res.output


def test_finetune_trains_on_the_lerobot_demonstrations_as_on_sim_ones(prefect_harness, tiny_model, tmp_path):
    import json

    from models.checkpoint import save_checkpoint
    from models.mu0 import Mu0
    from models.mu0_config import get_model_preset
    from tasks.policy.normalize import NormStats

    dataset = tmp_path / "ds"
    assert ingest(dataset, tiny_model).exit_code == 0
    mu0_dir = tmp_path / "mu0" / "step-000000"
    save_checkpoint(Mu0(get_model_preset("mu0-tiny")), mu0_dir, 0)
    res = runner.invoke(app, ["finetune", str(dataset), "--mu0", str(mu0_dir), "--out", str(tmp_path / "policy"),
                              "--steps", "2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    ckpt = tmp_path / "policy" / "step-000002"
    cfg = json.loads((ckpt / "config.json").read_text())
    assert (cfg["state_dim"], cfg["action_dim"]) == (8, 7)  # the fixture's observation.state and action
    stats = NormStats.load(ckpt)
    demos = read_demonstrations(str(dataset))
    states = np.concatenate([d.states for d in demos.values()])
    np.testing.assert_allclose(stats.state_mean, states.mean(0), rtol=1e-5, atol=1e-6)
    assert json.loads((ckpt / "run.json").read_text())["episodes"] == sorted(demos)

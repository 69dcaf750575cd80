"""`mu0 pretrain / evaluate / predict` through the real CLI app, every option exercised."""

from __future__ import annotations

import json

import cv2
import pytest
from typer.testing import CliRunner

from flows.cli import app
from models.checkpoint import load_checkpoint
from models.mu0_config import get_model_preset
from storage.torch_loader import TraceIndex
from tasks.train.config import PretrainConfig
from tasks.config import get_preset
from tasks.run.ingest import ingest

runner = CliRunner()


@pytest.fixture(scope="module")
def dataset(sim_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "traces"
    ingest(str(sim_corpus), str(root), get_preset("sim"))
    return str(root)


def _text(res) -> str:
    """Output with rich's box drawing and line wrapping removed."""
    return " ".join(res.output.replace("│", " ").split())


def _ok(args: list[str]):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, (res.output, res.exception)
    return res


def test_bad_options_are_refused_with_a_message(dataset, tmp_path):
    res = runner.invoke(app, ["pretrain", dataset, "--preset", "mu0-tyni", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "mu0-tiny" in _text(res)
    res = runner.invoke(app, ["evaluate", dataset, "--split", "test"])
    assert res.exit_code != 0 and "eval, train or all" in _text(res)
    res = runner.invoke(app, ["evaluate", dataset, "--offsets", "4,x"])
    assert res.exit_code != 0 and "comma-separated" in _text(res)
    res = runner.invoke(app, ["evaluate", dataset, "--checkpoint", str(tmp_path)])
    assert res.exit_code != 0 and "not a checkpoint" in _text(res)


def test_pretrain_config_file_flags_and_set_reach_the_model(prefect_harness, dataset, tmp_path):
    partial = tmp_path / "run.yaml"
    partial.write_text("steps: 5\nbatch_size: 2\neval_fraction: 0.0\nmodel:\n  max_keypoints: 8\n  lora_rank: 2\n")
    out = tmp_path / "run"
    res = _ok(["pretrain", dataset, "--out", str(out), "--config", str(partial), "--steps", "1", "--device", "cpu",
               "--no-resume", "--set", "model.lora_rank=3", "--set", "model.done_weight=0.25", "--set", "log_every=1"])
    assert "steps 0 -> 1" in res.output  # --steps beats the file
    ckpt = out / "step-000001"
    run = PretrainConfig.model_validate(json.loads((ckpt / "run.json").read_text())["config"])
    assert run == PretrainConfig(model=get_model_preset("mu0-tiny", max_keypoints=8, lora_rank=3, done_weight=0.25),
                                 steps=1, batch_size=2, eval_fraction=0.0, out_dir=str(out), device="cpu", resume=False,
                                 log_every=1)
    model, _ = load_checkpoint(ckpt)
    assert model.cfg == run.model  # the checkpoint's config.json is the model the run was given
    lora = [p for n, p in model.named_parameters() if "lora_a" in n]
    assert lora and all(p.shape[0] == 3 for p in lora)  # --set model.lora_rank=3 built rank-3 adapters


def test_pretrain_wrong_settings_are_refused(dataset, tmp_path):
    res = runner.invoke(app, ["pretrain", dataset, "--out", str(tmp_path), "--set", "model.lora_rnk=2"])
    assert res.exit_code == 2 and "unknown setting 'model.lora_rnk'" in _text(res)
    assert "Did you mean 'model.lora_rank'?" in _text(res)
    res = runner.invoke(app, ["pretrain", dataset, "--out", str(tmp_path), "--set", "model.n_ctrl=5"])
    assert res.exit_code == 2 and "invalid value for 'model': n_ctrl must be 4, 7 or 10, got 5" in _text(res)
    assert not any(tmp_path.iterdir())  # refused before anything ran


@pytest.mark.slow
def test_pretrain_evaluate_predict(prefect_harness, dataset, tmp_path):
    out = tmp_path / "run"
    res = _ok(["pretrain", dataset, "--out", str(out), "--preset", "mu0-tiny", "--steps", "2", "--batch-size", "2",
               "--lr", "3e-4", "--max-keypoints", "8", "--eval-fraction", "0.0", "--seed", "3", "--num-workers", "0",
               "--checkpoint-every", "1", "--log-every", "1", "--no-resume", "--device", "cpu"])
    assert "steps 0 -> 2" in res.output
    ckpt = out / "step-000002"
    run = json.loads((ckpt / "run.json").read_text())["config"]
    assert (run["lr"], run["seed"], run["model"]["max_keypoints"], run["resume"]) == (3e-4, 3, 8, False)
    assert run["model"]["seed"] == 3  # --seed is the run's one seed: initialisation too
    assert (out / "step-000001").is_dir()

    table = tmp_path / "eval.json"
    _ok(["evaluate", dataset, "--checkpoint", str(ckpt), "--split", "all", "--eval-fraction", "0.0", "--keypoints", "4",
         "--samples", "2", "--point-samples", "3", "--offsets", "4,8", "--no-history", "--no-depth", "--baselines", "--no-text-embedding",
         "--out", str(table), "--device", "cpu"])
    rows = json.loads(table.read_text())
    methods = {r["method"] for r in rows}
    assert methods == {"mu0", "mu0 (mean of 3)", "zero_motion", "constant_velocity", "nearest_neighbour"}
    assert {r["metric"] for r in rows} >= {"ade", "fde", "dtw", "frechet", "minADE2", "minFDE2"}
    _ok(["evaluate", dataset, "--split", "all", "--keypoints", "2", "--samples", "1", "--point-samples", "0", "--offsets", "4", "--history",
         "--depth", "--no-baselines", "--checkpoint", str(ckpt), "--text-embedding", "--out", str(table)])
    assert {r["method"] for r in json.loads(table.read_text())} == {"mu0"}

    index = TraceIndex.build(dataset)
    eid, frame = index.episode_ids[5], int(index.frames[5])
    png = tmp_path / "pred.png"
    _ok(["predict", "--checkpoint", str(ckpt), "--dataset", dataset, "--episode", eid[:10], "--frame", str(frame),
         "--out", str(png), "--keypoints", "6", "--history", "--seed", "1", "--device", "cpu"])
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] == 2 * 240
    res = runner.invoke(app, ["predict", "--checkpoint", str(ckpt), "--dataset", dataset, "--episode", eid[:10],
                              "--frame", "9999", "--out", str(png)])
    assert res.exit_code == 2 and "no sample at frame 9999" in _text(res)


def test_evaluate_has_a_rollout_stage(prefect_harness, dataset, tmp_path):
    from flows.evaluate import evaluate
    from tasks.sim.rollout_config import RolloutConfig
    from tasks.train.evaluate import EvalProtocol

    out = tmp_path / "rollout"
    rows = evaluate(dataset, None, EvalProtocol(n_keypoints=4, n_samples=1), split="all", eval_fraction=0.0,
                    nn_text_embedding=False, rollout=RolloutConfig(tasks="reach", episodes=2, videos=0),
                    rollout_out=str(out), rollout_runner="sequential")
    assert {r["method"] for r in rows} == {"zero_motion", "constant_velocity", "nearest_neighbour"}
    episodes = json.loads((out / "rollouts.json").read_text())
    assert [(e["task"], e["seed"], e["success"]) for e in episodes] == [("reach", 100000, True), ("reach", 100001, True)]

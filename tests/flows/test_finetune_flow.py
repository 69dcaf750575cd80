"""`finetune` end to end on a tiny ingested sim dataset and a 2-step μ0: checkpoints, resume, artifacts, then the
checkpoint policy in closed loop through the rollout harness and `mu0 rollout --checkpoint`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from flows.cli import app
from flows.finetune import finetune
from models.checkpoint import latest_checkpoint
from models.mu0_config import get_model_preset
from tasks.config import get_preset
from tasks.policy.config import FinetuneConfig
from tasks.policy.demos import select_demonstrations, stats_of
from tasks.policy.normalize import NormStats
from tasks.run.ingest import ingest
from tasks.train.config import PretrainConfig
from tasks.train.loop import train
from tasks.train.stats import ensure_trace_stats
from tests.flows.output import text


@pytest.fixture(scope="module")
def dataset(sim_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune") / "traces"
    ingest(str(sim_corpus), str(root), get_preset("sim"))
    return str(root)


@pytest.fixture(scope="module")
def mu0_run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("mu0") / "run"
    cfg = PretrainConfig(model=get_model_preset("mu0-tiny"), steps=2, batch_size=2, eval_fraction=0.0, out_dir=str(out), device="cpu")
    train(dataset, cfg, ensure_trace_stats(dataset, horizon=32))
    return out


@pytest.fixture(scope="module")
def policy_run(prefect_harness, dataset, mu0_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("policy") / "run"
    cfg = FinetuneConfig(mu0_checkpoint=str(mu0_run), steps=4, batch_size=4, checkpoint_every=2, log_every=1,
                         tasks=["button-press", "drawer-open"], demos_per_task=1, out_dir=str(out), device="cpu")
    return cfg, finetune(dataset, cfg)


def test_finetune_writes_checkpoints_with_stats_and_resume_continues(policy_run, dataset, mu0_run):
    cfg, first = policy_run
    out = cfg.out_dir
    assert (first.start_step, first.final_step) == (0, 4) and [r["step"] for r in first.log] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 and r["gate"] == pytest.approx(0.5, abs=0.01) for r in first.log)
    ckpt = latest_checkpoint(out)
    assert ckpt.name == "step-000004" and sorted(p.name for p in ckpt.parent.iterdir()) == ["step-000002", "step-000004"]
    assert {"policy.safetensors", "config.json", "optimizer.safetensors", "norm_stats.json", "run.json"} <= {p.name for p in ckpt.iterdir()}
    run = json.loads((ckpt / "run.json").read_text())
    assert run["mu0_checkpoint"] == str((mu0_run / "step-000002").resolve()) and len(run["episodes"]) == 2 == first.episodes
    demos = select_demonstrations(dataset, ["button-press", "drawer-open"], 1)
    assert NormStats.load(ckpt) == stats_of(demos) and sorted(demos) == run["episodes"]
    assert json.loads((ckpt / "config.json").read_text())["state_dim"] == 39

    second = finetune(dataset, cfg.model_copy(update={"steps": 6}))
    assert (second.start_step, second.final_step) == (4, 6) and [r["step"] for r in second.log] == [5, 6]
    assert latest_checkpoint(out).name == "step-000006"
    assert NormStats.load(latest_checkpoint(out)) == NormStats.load(ckpt)  # the resumed run keeps its statistics


def test_checkpoint_policy_acts_in_chunks_through_the_harness(policy_run, tmp_path):
    from tasks.sim.policies import make_policy
    from tasks.sim.rollout import rollout_episode
    from tasks.sim.rollout_config import PolicySpec
    from tasks.sim.rollout_runner import run_rollouts

    spec = PolicySpec(kind="checkpoint", checkpoint=policy_run[1].checkpoint)
    policy = make_policy(spec)
    assert (policy.needs_image, policy.chunk, policy.execute_horizon) == (True, 16, 8)
    asked = []
    act = policy.act
    policy.act = lambda obs: asked.append(obs.step) or act(obs)
    res = rollout_episode(policy, "button-press", 100_000, max_steps=20)
    assert res.steps == 20 and asked == [0, 8, 16] and res.actions.shape == (20, 4)
    summary = run_rollouts(spec, ["button-press"], 1, 100_000, tmp_path / "eval", videos=0, runner="sequential", max_steps=8)
    assert summary.rates[0].episodes == 1 and json.loads((tmp_path / "eval" / "rollouts.json").read_text())[0]["steps"] == 8


def test_finetune_and_rollout_cli(policy_run, dataset, mu0_run, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["finetune", dataset, "--mu0", str(mu0_run), "--out", str(tmp_path / "ablation"), "--steps", "2",
                              "--batch-size", "2", "--no-traces", "--tasks", "drawer-open", "--device", "cpu"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert "steps 0 -> 2" in text(res)
    ckpt = tmp_path / "ablation" / "step-000002"
    assert json.loads((ckpt / "config.json").read_text())["use_traces"] is False
    res = runner.invoke(app, ["rollout", "--checkpoint", str(ckpt), "--task", "reach", "--episodes", "1", "--out",
                              str(tmp_path / "eval"), "--runner", "sequential", "--max-steps", "8", "--videos", "0"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert json.loads((tmp_path / "eval" / "rollouts.json").read_text()) == [
        {"task": "reach", "seed": 100000, "success": False, "steps": 8}]
    res = runner.invoke(app, ["finetune", dataset, "--mu0", str(mu0_run), "--out", str(tmp_path / "grid4"), "--steps", "1",
                              "--batch-size", "2", "--tasks", "drawer-open", "--device", "cpu", "--set", "grid=4", "--set", "depth=1"])
    assert res.exit_code == 0, (res.output, res.exception)
    config = json.loads((tmp_path / "grid4" / "step-000001" / "config.json").read_text())
    assert (config["grid"], config["depth"], config["preset"]) == (4, 1, "policy-tiny")
    res = runner.invoke(app, ["finetune", dataset, "--mu0", str(mu0_run), "--out", str(tmp_path / "x"), "--set", "gridd=4"])
    assert res.exit_code == 2 and "unknown policy setting 'gridd'" in text(res) and "--set" in text(res)
    res = runner.invoke(app, ["finetune", dataset, "--mu0", str(tmp_path), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--mu0" in text(res) and "mu0 pretrain" in text(res)
    res = runner.invoke(app, ["finetune", dataset, "--mu0", str(mu0_run), "--out", str(tmp_path / "x"), "--preset", "policy-tin"])
    assert res.exit_code == 2 and "policy-tiny" in text(res) and "--preset" in text(res)


def test_pi0_baseline_trains_without_mu0_and_rolls_out_through_the_checkpoint_kind(prefect_harness, dataset, tmp_path):
    """`--preset pi0-tiny`: same flow, data and checkpoint layout, config kind "pi0"; the harness dispatches on it."""
    from tasks.sim.policies import make_policy
    from tasks.sim.rollout import rollout_episode
    from tasks.sim.rollout_config import PolicySpec

    runner = CliRunner()
    res = runner.invoke(app, ["finetune", dataset, "--preset", "pi0-tiny", "--out", str(tmp_path / "pi0"), "--steps", "3",
                              "--batch-size", "2", "--log-every", "1", "--tasks", "button-press,drawer-open", "--device", "cpu"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert "steps 0 -> 3" in text(res)
    ckpt = tmp_path / "pi0" / "step-000003"
    assert json.loads((ckpt / "config.json").read_text())["kind"] == "pi0"
    assert json.loads((ckpt / "run.json").read_text())["mu0_checkpoint"] is None
    policy = make_policy(PolicySpec(kind="checkpoint", checkpoint=str(ckpt)))
    assert (policy.needs_image, policy.chunk, policy.execute_horizon, policy.step) == (True, 16, 8, 3)
    asked = []
    act = policy.act
    policy.act = lambda obs: asked.append(obs.step) or act(obs)
    res = rollout_episode(policy, "button-press", 100_000, max_steps=20)
    assert res.steps == 20 and asked == [0, 8, 16] and res.actions.shape == (20, 4)
    res = runner.invoke(app, ["rollout", "--checkpoint", str(ckpt), "--task", "reach", "--episodes", "1", "--out",
                              str(tmp_path / "eval"), "--runner", "sequential", "--max-steps", "8", "--videos", "0"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert json.loads((tmp_path / "eval" / "rollouts.json").read_text())[0]["steps"] == 8
    res = runner.invoke(app, ["finetune", dataset, "--out", str(tmp_path / "x")])  # a μ0 preset without --mu0
    assert res.exit_code == 2 and "--mu0" in text(res) and "mu0 pretrain" in text(res)


def test_ema_checkpoints_serve_the_average_and_resume_keeps_both_weights(dataset, mu0_run, tmp_path):
    from models.loading import load_weights
    from tasks.policy.loop import train_policy

    cfg = FinetuneConfig(mu0_checkpoint=str(mu0_run), steps=2, batch_size=2, checkpoint_every=1, log_every=1, lr=1e-3,
                         ema_decay=0.5, tasks=["button-press"], demos_per_task=1, out_dir=str(tmp_path / "ema"), device="cpu")
    train_policy(dataset, cfg)
    train_policy(dataset, cfg.model_copy(update={"steps": 3}))  # resumed from step 2

    def weights(step: int, file: str) -> dict:
        return load_weights(tmp_path / "ema" / f"step-{step:06d}" / file)

    served = {s: weights(s, "policy.safetensors") for s in (1, 2, 3)}
    trained = {s: weights(s, "training_weights.safetensors") for s in (1, 2, 3)}
    key = "decoder.action_out.weight"
    assert not torch.equal(served[1][key], trained[1][key])  # the average lags the optimiser
    for s in (2, 3):  # average_s = 0.5 average_{s-1} + 0.5 weights_s, across the resume too
        for k in served[s]:
            if served[s][k].is_floating_point():
                torch.testing.assert_close(served[s][k], 0.5 * served[s - 1][k] + 0.5 * trained[s][k])
    assert not torch.equal(trained[3][key], trained[2][key])


def test_a_policy_run_moved_with_its_mu0_still_loads(policy_run, mu0_run, tmp_path):
    import shutil

    from tasks.policy.load import load_policy

    cfg, _ = policy_run
    run_dir, base = Path(cfg.out_dir), Path(cfg.out_dir).parent.parent
    moved = tmp_path / "elsewhere"
    for src in (run_dir, mu0_run):
        shutil.copytree(src, moved / src.relative_to(base))
    ckpt = latest_checkpoint(moved / run_dir.relative_to(base))
    run = json.loads((ckpt / "run.json").read_text())
    run["mu0_checkpoint"] = "/nowhere/mu0/step-000002"  # the original place is gone
    (ckpt / "run.json").write_text(json.dumps(run))
    policy, _, step = load_policy(ckpt)
    assert step == int(ckpt.name.split("-")[1]) and policy.mu0.cfg.preset == "mu0-tiny"
    run["mu0_checkpoint_from_run"] = None  # without the relative path the error names the recorded one
    (ckpt / "run.json").write_text(json.dumps(run))
    with pytest.raises(Exception, match="/nowhere/mu0"):
        load_policy(ckpt)


def test_training_frames_are_cached_within_their_byte_budget(dataset):
    from tasks.policy.demos import DemoSteps

    demos = select_demonstrations(dataset, ["button-press"], 1)
    stats = stats_of(demos)
    small = DemoSteps(dataset, demos, stats, chunk=4, image_size=64, cache_bytes=2 * 3 * 64 * 64)
    full = DemoSteps(dataset, demos, stats, chunk=4, image_size=64)
    assert small.cache_frames == 2 and len(small) >= 5
    for i in [0, 1, 2, 3, 4, 0]:
        torch.testing.assert_close(small[i]["image"], full[i]["image"])
        assert len(small._cache) <= 2
    assert len(full._cache) == 5


def test_action_error_on_held_out_demonstrations_per_task(policy_run, dataset):
    from tasks.policy.validate import action_error

    cfg, _ = policy_run
    ckpt = str(latest_checkpoint(cfg.out_dir))
    err = action_error(ckpt, dataset, ["button-press", "drawer-open"], samples=12, batch_size=6)
    assert set(err) == {"button-press", "drawer-open", "all"} and err["all"]["n"] == 12
    assert err["button-press"]["n"] + err["drawer-open"]["n"] == 12
    for e in err.values():  # a 4-step policy predicts little: its error is of the order of the mean predictor's
        assert e["mse"] > 0 and e["mean_mse"] > 0 and 0.2 < e["ratio"] < 10
    assert action_error(ckpt, dataset, ["button-press", "drawer-open"], samples=12, batch_size=6) == err  # seeded

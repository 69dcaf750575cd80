"""The pretrain flow end to end on a tiny ingested sim dataset: checkpoints, artifacts, resume."""

from __future__ import annotations

import json

import pytest
import torch

from flows.pretrain import pretrain
from models.checkpoint import latest_checkpoint, load_checkpoint, read_step
from models.mu0_config import get_model_preset
from tasks.train.config import PretrainConfig
from tasks.train.loop import best_checkpoint, checkpoint_stats, lr_at, read_run
from tasks.config import get_preset
from tasks.run.ingest import ingest


@pytest.fixture(scope="module")
def dataset(sim_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain") / "traces"
    ingest(str(sim_corpus), str(root), get_preset("sim"))
    return str(root)


def test_pretrain_writes_checkpoints_and_resume_continues_the_step_count(prefect_harness, dataset, tmp_path):
    out = tmp_path / "run"
    cfg = PretrainConfig(model=get_model_preset("mu0-tiny", max_keypoints=8), steps=3, batch_size=2, eval_fraction=0.0,
                         checkpoint_every=2, log_every=1, out_dir=str(out), device="cpu")
    first = pretrain(dataset, cfg)
    assert (first.start_step, first.final_step) == (0, 3)
    assert sorted(p.name for p in out.iterdir()) == ["step-000002", "step-000003"]
    assert [r["step"] for r in first.log] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(r["loss"])) and r["loss"] > 0 for r in first.log)
    ckpt = latest_checkpoint(out)
    assert ckpt.name == "step-000003" and read_step(ckpt) == 3
    assert {"model.safetensors", "config.json", "optimizer.safetensors", "trace_stats.json", "run.json"} <= {p.name for p in ckpt.iterdir()}
    stored = json.loads(open(f"{dataset}/stats.json").read())
    assert list(checkpoint_stats(ckpt).delta_scale) == stored["delta_scale"] and stored["horizon"] == 32
    assert read_run(ckpt)["config"]["model"]["max_keypoints"] == 8 and read_run(ckpt)["dataset"] == dataset
    assert PretrainConfig.model_validate(read_run(ckpt)["config"]) == cfg  # the nested config round-trips through run.json
    model, step = load_checkpoint(ckpt)
    assert step == 3 and model.cfg == cfg.model  # config.json holds the very model config the run was given

    second = pretrain(dataset, cfg.model_copy(update={"steps": 5}))
    assert (second.start_step, second.final_step) == (3, 5)
    assert [r["step"] for r in second.log] == [4, 5]
    assert latest_checkpoint(out).name == "step-000005"
    # the resumed weights moved on from the step-3 ones
    resumed, _ = load_checkpoint(latest_checkpoint(out))
    before = dict(model.named_parameters())
    assert any(not torch.equal(p, before[n]) for n, p in resumed.named_parameters() if p.requires_grad)

    again = pretrain(dataset, cfg.model_copy(update={"steps": 5}))  # nothing left to do
    assert (again.start_step, again.final_step) == (5, 5) and again.log == []


def test_every_checkpoint_is_scored_on_held_out_data_and_the_best_is_selected_by_its_loss(prefect_harness, dataset, tmp_path):
    out = tmp_path / "run"
    cfg = PretrainConfig(model=get_model_preset("mu0-tiny", max_keypoints=8), steps=4, batch_size=2, lr=1e-3,
                         lr_schedule="cosine", warmup_steps=2, eval_dataset=dataset, held_out_slots=4,
                         checkpoint_every=2, log_every=1, out_dir=str(out), device="cpu")
    report = pretrain(dataset, cfg)
    assert [r["step"] for r in report.curve] == [2, 4]
    for rec in report.curve:
        assert rec["held_out_loss"] > 0 and 0 < rec["held_out_ade"] < 5 and rec["held_out_fde"] > 0
        stored = json.loads((out / f"step-{rec['step']:06d}" / "held_out.json").read_text())
        assert stored == rec
    best = min(report.curve, key=lambda r: r["held_out_loss"])
    assert report.best_checkpoint == str(out / f"step-{best['step']:06d}") == str(best_checkpoint(out))
    assert [round(r["lr"], 8) for r in report.log] == [round(lr_at(s, cfg), 8) for s in range(4)]
    assert report.log[0]["lr"] == pytest.approx(5e-4) and report.log[1]["lr"] == pytest.approx(1e-3)

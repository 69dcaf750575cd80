"""`mu0 pretrain / evaluate / predict` through the real CLI app, every option exercised."""

from __future__ import annotations

import json

import cv2
import pytest
from typer.testing import CliRunner

from flows.cli import app
from storage.torch_loader import TraceIndex
from tests.bench.bench_pretrain import ingest_sequential

runner = CliRunner()


@pytest.fixture(scope="module")
def dataset(sim_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "traces"
    ingest_sequential(sim_corpus, root)
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


@pytest.mark.slow
def test_pretrain_evaluate_predict(prefect_harness, dataset, tmp_path):
    out = tmp_path / "run"
    res = _ok(["pretrain", dataset, "--out", str(out), "--preset", "mu0-tiny", "--steps", "2", "--batch-size", "2",
               "--lr", "3e-4", "--max-keypoints", "8", "--eval-fraction", "0.0", "--seed", "3", "--num-workers", "0",
               "--checkpoint-every", "1", "--log-every", "1", "--no-resume", "--device", "cpu"])
    assert "steps 0 -> 2" in res.output
    ckpt = out / "step-000002"
    run = json.loads((ckpt / "run.json").read_text())["config"]
    assert (run["lr"], run["seed"], run["max_keypoints"], run["resume"]) == (3e-4, 3, 8, False)
    assert (out / "step-000001").is_dir()

    table = tmp_path / "eval.json"
    _ok(["evaluate", dataset, "--checkpoint", str(ckpt), "--split", "all", "--eval-fraction", "0.0", "--keypoints", "4",
         "--samples", "2", "--offsets", "4,8", "--no-history", "--no-depth", "--baselines", "--no-text-embedding",
         "--out", str(table), "--device", "cpu"])
    rows = json.loads(table.read_text())
    methods = {r["method"] for r in rows}
    assert methods == {"mu0", "zero_motion", "constant_velocity", "nearest_neighbour"}
    assert {r["metric"] for r in rows} >= {"ade", "fde", "dtw", "frechet", "minADE2", "minFDE2"}
    _ok(["evaluate", dataset, "--split", "all", "--keypoints", "2", "--samples", "1", "--offsets", "4", "--history",
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

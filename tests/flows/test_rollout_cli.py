"""`mu0 rollout` end to end through the Prefect flow (sequential runner), its artifacts, and its refusals."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flows.cli import app
from tests.flows.output import text

runner = CliRunner()


def test_rollout_cli_prints_the_success_table_and_writes_rollouts(prefect_harness, tmp_path):
    out = tmp_path / "eval"
    res = runner.invoke(app, ["rollout", "--policy", "scripted", "--task", "reach", "--episodes", "2", "--out", str(out),
                              "--runner", "sequential", "--videos", "1"])
    assert res.exit_code == 0, (res.output, res.exception)
    shown = text(res).replace("│", " ")
    assert "reach 2 2 100.0% 34.2–100.0%" in " ".join(shown.split()), res.output
    assert "wall time" in shown
    rows = json.loads((out / "rollouts.json").read_text())
    assert [(r["task"], r["seed"], r["success"]) for r in rows] == [("reach", 100000, True), ("reach", 100001, True)]
    assert [p.name for p in (out / "videos").iterdir()] == ["reach-100000-success.mp4"]


def test_rollout_flow_publishes_the_success_table(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.rollout import rollout
    from tasks.sim.rollout_config import RolloutConfig

    state = rollout(str(tmp_path), RolloutConfig(tasks=["button-press"], episodes=1, videos=0), runner="sequential",
                    return_state=True)
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    kinds = {a.type: a for a in arts}
    table = json.loads(kinds["table"].data)
    assert table[0]["task"] == "button-press" and table[0]["successes"] == "1" and table[0]["rate"] == "100.0%"
    assert "| button-press | 1 | 1 | 100.0% |" in kinds["markdown"].data


def test_rollout_cli_refusals(tmp_path):
    res = runner.invoke(app, ["rollout", "--checkpoint", str(tmp_path), "--task", "reach", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "not a policy checkpoint" in text(res)
    res = runner.invoke(app, ["rollout", "--task", "rech", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "unknown Meta-World task" in text(res)
    res = runner.invoke(app, ["rollout", "--task", "reach", "--out", str(tmp_path), "--runner", "dask"])
    assert res.exit_code != 0 and "ray' or 'sequential" in text(res)
    res = runner.invoke(app, ["rollout", "--policy", "random", "--task", "reach", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "unknown policy" in text(res)
    assert not (tmp_path / "rollouts.json").exists()

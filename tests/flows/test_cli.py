"""The mu0 CLI: thin wrappers with helpful errors and meaningful exit codes."""

from __future__ import annotations

from typer.testing import CliRunner

from flows.cli import app
from tests.flows.output import text

runner = CliRunner()


def _said(res) -> str:
    """The output with rich's error box and line wrapping undone."""
    return " ".join(res.output.replace("│", " ").split())


def test_unknown_preset_lists_the_known_ones(tmp_path):
    res = runner.invoke(app, ["ingest", str(tmp_path), "--preset", "sime"])
    assert res.exit_code == 2
    assert "known presets" in text(res) and "sim" in text(res)


def test_missing_source_is_a_clear_error(prefect_harness, tmp_path):
    res = runner.invoke(app, ["ingest", str(tmp_path / "nowhere"), "--dataset", str(tmp_path / "ds"), "--sequential"])
    assert res.exit_code == 2
    assert "does not exist" in text(res)


def test_nothing_ingestible_exits_nonzero_and_says_where_to_look(prefect_harness, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.mp4").write_text("not a video")
    res = runner.invoke(app, ["ingest", str(src), "--dataset", str(tmp_path / "ds"), "--preset", "sim", "--sequential"])
    assert res.exit_code == 1, res.output
    assert "1 failed" in text(res) and "broken.mp4" in text(res) and "status != 'ok'" in text(res)


def test_sim_writes_episode_directories(tmp_path):
    res = runner.invoke(app, ["sim", "--out", str(tmp_path), "--episodes", "1", "--tasks", "reach", "--max-steps", "20"])
    assert res.exit_code == 0, res.output
    (ep,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert {"video.mp4", "depth.npy", "cameras.npz", "meta.json", "actions.npy", "states.npy"} <= {p.name for p in ep.iterdir()}


def test_backend_flags_reach_the_config_and_bad_values_are_refused(prefect_harness, sim_corpus, tmp_path):
    bad = runner.invoke(app, ["ingest", str(sim_corpus), "--dataset", str(tmp_path / "x"), "--captions", "poetry"])
    assert bad.exit_code == 2 and "template" in text(bad)  # the error lists the accepted values
    one = sorted(p for p in sim_corpus.iterdir() if p.is_dir())[0]
    dataset = tmp_path / "ds"
    res = runner.invoke(app, ["ingest", str(one), "--dataset", str(dataset), "--preset", "sim", "--sequential",
                              "--captions", "off"])
    assert res.exit_code == 0, res.output
    from storage import query

    assert "captions" not in query.counts(str(dataset))  # no captions were made, so no table
    [row] = query.episodes(str(dataset), columns=["config"]).to_pylist()
    assert '"captions":{"backend":"off"' in row["config"]


def test_config_file_flags_and_set_reach_the_stored_config_in_that_order(prefect_harness, sim_corpus, tmp_path):
    partial = tmp_path / "lab.yaml"
    partial.write_text("corpus: lab\ncaptions:\n  backend: vlm\ntrack:\n  fb_max_px: 0.5\n  window_px: 15\n")
    one = sorted(p for p in sim_corpus.iterdir() if p.is_dir())[0]
    dataset = tmp_path / "ds"
    res = runner.invoke(app, ["ingest", str(one), "--dataset", str(dataset), "--preset", "sim", "--sequential",
                              "--config", str(partial), "--captions", "template",  # the flag beats the file ...
                              "--set", "captions.backend=off", "--set", "track.fb_max_px=0.7",  # ... and --set beats both
                              "--set", "decode.max_frames=40"])
    assert res.exit_code == 0, res.output
    from storage import query
    from tasks.config import IngestConfig, get_preset, with_overrides

    [row] = query.episodes(str(dataset), columns=["config", "corpus", "n_frames"]).to_pylist()
    expected = with_overrides(get_preset("sim"), {"corpus": "lab", "captions.backend": "off", "track.fb_max_px": 0.7,
                                                  "track.window_px": 15, "decode.max_frames": 40})
    assert IngestConfig.model_validate_json(row["config"]) == expected
    assert row["corpus"] == "lab" and row["n_frames"] <= 40


def test_wrong_setting_path_or_value_is_refused_before_anything_runs(tmp_path):
    res = runner.invoke(app, ["ingest", str(tmp_path), "--set", "decode.target_fsp=5"])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit)
    assert ("unknown setting 'decode.target_fsp'; decode has: max_frames, max_width, spill_dir, spill_mb, target_fps. "
            "Did you mean 'decode.target_fps'?") in _said(res)
    res = runner.invoke(app, ["ingest", str(tmp_path), "--set", "track.fb_max_px=-0.5"])
    assert res.exit_code == 2 and "invalid value for 'track.fb_max_px': Input should be greater than 0 (got -0.5)" in _said(res)
    (tmp_path / "list.yaml").write_text("- 1\n")
    res = runner.invoke(app, ["ingest", str(tmp_path), "--config", str(tmp_path / "list.yaml")])
    assert res.exit_code == 2 and "must hold a mapping of settings" in _said(res)

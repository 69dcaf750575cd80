"""What a CLI user sees for bad input: clear words, the labels intact, never a traceback or a markup error."""

from __future__ import annotations

from typer.testing import CliRunner

from flows.cli import app
from tests.flows.output import text

runner = CliRunner()


def test_a_refused_source_prints_the_allowed_roots_in_brackets_without_crashing(prefect_harness, tmp_path, monkeypatch):
    allowed, outside = tmp_path / "allowed", tmp_path / "elsewhere"
    allowed.mkdir()
    outside.mkdir()
    manifest = allowed / "list.txt"
    manifest.write_text(f"{outside}/clip.mp4\n")
    monkeypatch.setenv("MU0_SOURCE_ROOTS", str(allowed))
    res = runner.invoke(app, ["ingest", str(manifest), "--dataset", str(tmp_path / "ds"), "--sequential"])
    assert res.exit_code == 2, (res.output, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert str(allowed) in text(res) and "Traceback" not in res.output


def test_the_failure_listing_keeps_its_labels_and_bracketed_paths(prefect_harness, tmp_path):
    src = tmp_path / "clips"
    src.mkdir()
    (src / "broken [take 2].mp4").write_text("not a video")
    res = runner.invoke(app, ["ingest", str(src), "--dataset", str(tmp_path / "ds"), "--preset", "sim", "--sequential"])
    assert res.exit_code == 1, res.output
    out = text(res)
    assert "[failed]" in out and "broken [take 2].mp4" in out and "not a video" in out, out

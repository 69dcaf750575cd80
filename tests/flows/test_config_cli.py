"""`mu0 config show`: the effective config as YAML, the same one `ingest` / `pretrain` would run with."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from flows.cli import app
from models.mu0_config import get_model_preset
from tasks.config import IngestConfig, get_preset, with_overrides
from tasks.train.config import PretrainConfig

runner = CliRunner()


def text(res) -> str:
    """The output with rich's error box and line wrapping undone."""
    return " ".join(res.output.replace("│", " ").split())


def _show(*args: str):
    res = runner.invoke(app, ["config", "show", *args])
    assert res.exit_code == 0, (res.output, res.exception)
    return yaml.safe_load(res.output)


def test_show_prints_the_effective_ingest_config(tmp_path):
    partial = tmp_path / "lab.yaml"
    partial.write_text("corpus: lab\ntrack:\n  fb_max_px: 0.5\n  window_px: 15\n")
    shown = _show("--preset", "droid", "--config", str(partial), "--set", "track.fb_max_px=0.7",
                  "--set", "captions.backend=off", "--set", "depth.input_size=null")
    expected = with_overrides(get_preset("droid"), {"corpus": "lab", "track.window_px": 15, "track.fb_max_px": 0.7,
                                                     "captions.backend": "off"})
    assert IngestConfig.model_validate(shown) == expected
    assert shown["track"]["fb_max_px"] == 0.7 and shown["decode"]["target_fps"] == 5.0  # --set after the file; preset kept


def test_show_output_reads_back_as_a_config_file(tmp_path):
    out = tmp_path / "full.yaml"
    out.write_text(runner.invoke(app, ["config", "show", "--preset", "agibot", "--set", "decode.max_width=480"]).output)
    assert _show("--preset", "sim", "--config", str(out)) == _show("--preset", "agibot", "--set", "decode.max_width=480")


def test_show_a_pretraining_preset_gives_the_pretraining_config():
    shown = _show("--preset", "mu0-tiny", "--set", "model.lora_rank=2", "--set", "betas=[0.9, 0.99]")
    cfg = PretrainConfig.model_validate(shown)
    assert cfg == PretrainConfig(model=get_model_preset("mu0-tiny", lora_rank=2), betas=(0.9, 0.99))
    assert _show("--preset", "mu0-full")["model"]["backbone_layers"] == 20


def test_unknown_preset_lists_both_kinds():
    res = runner.invoke(app, ["config", "show", "--preset", "mu0-tyni"])
    assert res.exit_code == 2
    assert "known presets: ingest agibot, droid, egodex, generic, sim; pretraining mu0-full, mu0-tiny" in text(res)
    assert "Did you mean 'mu0-tiny'?" in text(res)


def test_wrong_settings_are_refused_without_a_traceback(tmp_path):
    res = runner.invoke(app, ["config", "show", "--preset", "sim", "--set", "decode.target_fsp=5"])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit) and "Traceback" not in res.output
    assert ("unknown setting 'decode.target_fsp'; decode has: max_frames, max_width, spill_dir, spill_mb, target_fps. "
            "Did you mean 'decode.target_fps'?") in text(res)
    res = runner.invoke(app, ["config", "show", "--set", "decode.target_fps=-1"])
    assert res.exit_code == 2 and "invalid value for 'decode.target_fps': Input should be greater than 0" in text(res)
    res = runner.invoke(app, ["config", "show", "--config", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "--config" in text(res) and "cannot read config file" in text(res)

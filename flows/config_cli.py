"""`mu0 config show` and the `--config FILE` / `--set KEY=VALUE` options that `ingest` and `pretrain` share.

The order is the same everywhere: the preset, then the file (merged deeply), then a command's own
flags (shortcuts for common settings), then `--set`. The machinery is tasks/config.py's; this module
only turns its refusals into typer's (exit code 2, no traceback, the option named).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import List, Optional

import typer

config_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Inspect the settings a command would run with.")

SET_HELP = "any setting by dotted path, its value read as YAML (repeatable; applied last); `mu0 config show` lists them"
CONFIG_HELP = "YAML file of settings (a partial, nested mapping) merged over the preset"


def settle(cfg, config_file: Optional[Path], shortcuts: Mapping[str, Mapping[str, object]], assignments: Optional[List[str]]):
    """`cfg` with the file, then the shortcut flags ({"--captions": {"captions.backend": "off"}}; None values
    are flags not given), then `--set` applied; a refusal is a typer.BadParameter naming the option."""
    from tasks.config import SettingError, merge_config, parse_assignments, read_config_file, with_overrides

    try:
        if config_file is not None:
            cfg = merge_config(cfg, read_config_file(config_file))
    except SettingError as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from None
    for flag, paths in shortcuts.items():
        given = {path: value for path, value in paths.items() if value is not None}
        try:
            cfg = with_overrides(cfg, given) if given else cfg
        except SettingError as exc:
            raise typer.BadParameter(str(exc), param_hint=flag) from None
    try:
        sets = parse_assignments(assignments or [])
        return with_overrides(cfg, sets) if sets else cfg
    except SettingError as exc:
        raise typer.BadParameter(str(exc), param_hint="--set") from None


def preset_config(name: str):
    """An ingest preset's IngestConfig, or for a model preset the PretrainConfig that builds that model."""
    import difflib

    from models.mu0_config import MODEL_PRESETS
    from tasks.config import PRESETS
    from tasks.train.config import PretrainConfig

    if name in PRESETS:
        return PRESETS[name]
    if name in MODEL_PRESETS:
        return PretrainConfig(model=MODEL_PRESETS[name])
    close = difflib.get_close_matches(name, [*PRESETS, *MODEL_PRESETS], n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise typer.BadParameter(
        f"unknown preset {name!r}; known presets: ingest {', '.join(sorted(PRESETS))}; "
        f"pretraining {', '.join(sorted(MODEL_PRESETS))}.{hint}", param_hint="--preset",
    )


def to_yaml(cfg) -> str:
    """The config as YAML that reads back (`--config`) to the same config."""
    import yaml

    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


@config_app.command("show")
def show(
    preset: str = typer.Option("generic", help="an ingest preset (sim | generic | droid | agibot | egodex) or a "
                               "pretraining model preset (mu0-tiny | mu0-full)"),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE.yaml", help=CONFIG_HELP),
    settings: Optional[List[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
):
    """Print the effective config (YAML) for a preset with --config and --set applied; it reads back with --config."""
    cfg = settle(preset_config(preset), config, {}, settings)
    typer.echo(to_yaml(cfg), nl=False)

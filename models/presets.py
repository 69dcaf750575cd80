"""Named presets of frozen pydantic configs, looked up the same way for every model family."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel

C = TypeVar("C", bound=BaseModel)


def pick_preset(presets: Mapping[str, C], name: str, kind: str, error: type[ValueError], **overrides) -> C:
    """The preset called `name`, fields optionally overridden (and validated); an unknown name raises
    `error` listing the known ones and the closest match."""
    try:
        cfg = presets[name]
    except KeyError:
        close = difflib.get_close_matches(name, presets, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise error(f"unknown {kind} preset {name!r}; known presets: {', '.join(sorted(presets))}.{hint}") from None
    return type(cfg)(**{**cfg.model_dump(), **overrides}) if overrides else cfg

"""Process environment defaults, set once by every entry point (the CLI, tests, benchmarks) before the
libraries that read them are imported: Prefect, Ray, huggingface_hub and MuJoCo read these at import or init.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULTS: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # no phoning home from a local server
    # The ephemeral API server gets 20 s to start by default; two `mu0` commands starting at once on a busy
    # 2-core machine took longer and failed with "Timed out while attempting to connect to ephemeral Prefect API".
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "HF_HUB_OFFLINE": "1",  # models come from local directories or the cache; a missing one fails fast, no download
    "RAY_AUTH_MODE": "disabled",  # a local Ray without token setup
    "MUJOCO_GL": "egl",  # headless rendering for the sim corpus
}


def apply_defaults(extra: Mapping[str, str] | None = None, override: bool = False) -> None:
    """DEFAULTS plus `extra` into os.environ; values already set win unless `override` (tests pin theirs)."""
    for key, value in {**DEFAULTS, **(extra or {})}.items():
        if override:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)

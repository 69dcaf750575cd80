"""Import rules ([tool.importlinter] in pyproject.toml) hold for the tree, and the check can fail.

Layers flows -> tasks -> models | storage; storage and models import nothing of the project;
tasks.extract imports neither tasks.view nor tasks.train. `lint-imports` reads the contracts from
the pyproject.toml of its working directory and finds the packages there (the cwd comes first on
its sys.path, before the editable install's finder).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flows", "tasks", "models", "storage")
CONTRACTS = (
    "Layers: flows -> tasks -> models | storage",
    "storage imports neither tasks nor models nor flows",
    "models imports neither tasks nor storage nor flows",
    "tasks.extract imports neither tasks.view nor tasks.train",
)


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("lint-imports")
    if not script.exists():
        pytest.fail(f"{script} is missing: install the test extra (pip install -e '.[test]'), it pins import-linter")
    return subprocess.run([str(script), "--no-cache", "--no-logo"], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_the_tree_keeps_every_import_rule():
    res = _lint_imports(ROOT)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    for name in CONTRACTS:  # every contract was checked, not an empty config
        assert f"{name} KEPT" in out, out
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in out, out


@pytest.mark.parametrize(
    "path, line, broken",
    [
        ("tasks/extract/lift.py", "import tasks.view.scene", ["tasks.extract imports neither tasks.view nor tasks.train"]),
        ("storage/schema.py", "import tasks", ["Layers: flows -> tasks -> models | storage",
                                               "storage imports neither tasks nor models nor flows"]),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, path, line, broken):
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / path
    target.write_text(target.read_text() + f"\n{line}  # forbidden, added by the test\n")

    res = _lint_imports(tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    for name in broken:
        assert f"{name} BROKEN" in out, out
    for name in set(CONTRACTS) - set(broken):
        assert f"{name} KEPT" in out, out
    module = path.removesuffix(".py").replace("/", ".")
    assert module in out.split("Broken contracts", 1)[-1], out  # the report names the importing module

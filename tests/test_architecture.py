"""The layer contracts of pyproject.toml ([tool.importlinter]), checked with import-linter.

import-linter (via grimp) finds a package's modules by walking its folder, and edgegen.models
and edgegen.converters live in models/ and converters/ (setuptools' package-dir). So the check
runs on a copy of the Python files laid out as they install: edgegen/, edgegen/models/,
edgegen/converters/.
"""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "pyproject.toml"


@pytest.fixture
def installed_layout(tmp_path):
    def python_only(folder, names):
        return [n for n in names if not n.endswith(".py") and not (Path(folder) / n).is_dir()]

    package = tmp_path / "edgegen"
    shutil.copytree(ROOT / "edgegen", package, ignore=python_only)
    shutil.copytree(ROOT / "models", package / "models", ignore=python_only)
    shutil.copytree(ROOT / "converters", package / "converters", ignore=python_only)
    shutil.copy(CONFIG, tmp_path / "pyproject.toml")
    return tmp_path


def _python(root: Path, code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` with only the copied tree importable as edgegen."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )


def _lint(root: Path) -> subprocess.CompletedProcess:
    code = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return _python(root, code, "--config", str(root / "pyproject.toml"), "--no-cache")


def test_layers_are_kept_and_nothing_imports_in_a_cycle(installed_layout):
    result = _lint(installed_layout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout, result.stdout


def test_every_module_of_edgegen_is_in_a_layer(installed_layout):
    code = "import grimp; print(*sorted(grimp.build_graph('edgegen').find_children('edgegen')))"
    result = _python(installed_layout, code)
    assert result.returncode == 0, result.stderr
    contract = tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"][0]
    placed = {name.strip() for layer in contract["layers"] for name in layer.split(":")}
    assert set(result.stdout.split()) == placed


def test_a_model_importing_a_converter_breaks_the_contract(installed_layout):
    probe = installed_layout / "edgegen" / "models" / "probe.py"
    probe.write_text("from edgegen.converters import mapping\n")
    result = _lint(installed_layout)
    assert result.returncode != 0
    assert "edgegen.models.probe -> edgegen.converters.mapping" in result.stdout, result.stdout


def test_a_cycle_breaks_the_contract(installed_layout):
    # sources imports store (to find store models); store importing sources closes a loop.
    (installed_layout / "edgegen" / "store.py").open("a").write("\nfrom edgegen import sources\n")
    result = _lint(installed_layout)
    assert result.returncode != 0
    assert "no import cycles BROKEN" in result.stdout, result.stdout

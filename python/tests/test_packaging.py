"""The package installs offline, as README.md says: `pip install
--no-build-isolation --no-index ./python` into a virtual environment made
with --system-site-packages (Debian's python3-setuptools, python3-wheel,
python3-pip, python3-venv; nothing downloaded), and the installed copy works
with its type marker, from outside the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PYTHON_DIR


def _have(module: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


@pytest.mark.skipif(
    not all(_have(m) for m in ("venv", "pip", "setuptools", "wheel")),
    reason="needs python3-venv, python3-pip, python3-setuptools and python3-wheel (scripts/common.sh installs them)",
)
def test_pip_installs_the_package_offline(tmp_path: Path) -> None:
    # A copy of python/: pip builds in the source folder (build/, *.egg-info).
    src = tmp_path / "src"
    shutil.copytree(PYTHON_DIR, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_INDEX_URL", "PIP_FIND_LINKS")}
    env["PIP_NO_INDEX"] = "1"  # no registry: offline
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    r = subprocess.run(
        [py, "-m", "pip", "install", "--no-build-isolation", "--no-index", str(src)],
        env=env, capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    code = (
        "import jobring, os, sys\n"
        "assert 'site-packages' in jobring.__file__, jobring.__file__\n"
        "assert os.path.exists(os.path.join(os.path.dirname(jobring.__file__), 'py.typed'))\n"
        "print(jobring.__version__, jobring.library_version())\n"
    )
    r = subprocess.run([py, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import jobring

    assert r.stdout.split() == [jobring.__version__, jobring.library_version()]


@pytest.mark.skipif(not _have("mypy"), reason="needs mypy (Debian's mypy; scripts/common.sh installs it)")
def test_type_hints_pass_mypy_strict(tmp_path: Path) -> None:
    """The package ships py.typed: its hints must hold up under mypy --strict."""
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), "jobring"],
        cwd=PYTHON_DIR, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr

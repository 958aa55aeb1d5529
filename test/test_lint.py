"""The lint gate: ruff (ruff.toml: pyflakes' checks, pycodestyle's errors and warnings, 120-character lines)
and pyflakes itself, over the package, the tests and the launch file."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["hqsmem_ros", "test", "launch"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_is_clean():
    result = _run("ruff", "check", "--no-cache", *SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pyflakes_is_clean():
    result = _run("pyflakes", *SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr

"""Shared fixtures: deterministic seeds, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def run_cli():
    """Run the real `dtf` command (as `python -m dtfcli`) and return the completed process."""

    def run(*args: str, check: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "dtfcli", *args],
            capture_output=True, text=True, env={**os.environ, "COLUMNS": "200", **(env or {})},
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"dtf {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run

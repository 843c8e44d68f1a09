"""Shared fixtures: deterministic seeds, the real CLI."""

from __future__ import annotations

import os

import pytest
import torch
from _cli import dtf

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def run_cli():
    """Run the real `dtf` command (tests/_cli.py: in this interpreter unless ``process=True``
    or ``env`` sets more than COLUMNS) and return a CompletedProcess."""
    return dtf

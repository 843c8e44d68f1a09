"""The CPU settings of dtfcli.engine.runtime, checked in fresh interpreters. The allocator
by counting page faults (a behaviour, not a timing): with the setting, a large tensor freed
and allocated again reuses the same pages; without it, every allocation faults anew. The
denormal flushing by the values themselves."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, resource, sys, torch
from dtfcli.engine.runtime import tune_cpu_allocator
tuned = tune_cpu_allocator()
x = torch.ones(12 * 1024 * 1024)  # 48 MiB, above the largest mmap threshold glibc adapts to (32 MiB)
def faults_of_one_pass():  # what a network's forward does: fresh outputs, freed at the end
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    outs = [x * 2]
    for _ in range(5):
        outs.append((outs[-1] + x).relu_())
    del outs
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
passes = [faults_of_one_pass() for _ in range(9)]
print(json.dumps({"tuned": tuned, "faults": passes[5:]}))  # the first passes lay the heap out
"""


def _probe(**env_overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "DTF_CPU_ALLOCATOR"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(env_overrides)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")


def test_tuned_allocator_reuses_freed_pages():
    result = _probe()
    assert result["tuned"] is True
    pages = 6 * 48 * 1024 * 1024 // 4096  # what one pass would fault in from scratch
    # Later passes touch pages the process already has. glibc may still move one block
    # while the heap settles (a CI run once saw one 48 MiB block re-faulted at the fifth
    # pass), so four later passes together must fault less than half of one pass.
    assert sum(result["faults"]) < pages // 2, result


def test_default_allocator_faults_every_pass_and_can_be_chosen():
    result = _probe(DTF_CPU_ALLOCATOR="default")
    assert result["tuned"] is False
    assert min(result["faults"]) > 6 * 48 * 1024 * 1024 // 4096 // 2, result  # every pass


def test_users_own_malloc_settings_win():
    assert _probe(MALLOC_ARENA_MAX_="2")["tuned"] is False


def test_the_dtf_command_applies_it(run_cli):
    # a real process: the allocator must be set before torch allocates, as `dtf` does it (the
    # machine report is the same for any suite: the quickest one, one round)
    quickest = ("--suite", "inference", "--quick", "--device", "cpu", "--iters", "1", "--warmup", "0")
    result = run_cli("benchmark", *quickest, "--json", process=True)
    assert result.returncode == 0, result.stderr
    machine = json.loads(result.stdout)["machine"]
    assert machine["cpu_allocator"].startswith("glibc")
    assert machine["cpu_denormals"].startswith("flushed")
    assert machine["dtf_cpu_kernels"].startswith(("native", "no C compiler", "unavailable", "off"))


DENORMAL_PROBE = """
import json, torch
from dtfcli.engine.runtime import apply_cpu_settings
apply_cpu_settings()
tiny = torch.tensor([1e-39, 3e-39])  # float32 denormals (the smallest normal is 1.18e-38)
print(json.dumps({"product": (tiny * 1.5).tolist(), "sum": (tiny + tiny).tolist()}))
"""


def _denormal_probe(**env_overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DTF_DENORMALS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(env_overrides)
    out = subprocess.run([sys.executable, "-c", DENORMAL_PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="FTZ/DAZ are x86 (SSE) settings")
def test_denormals_are_flushed_to_zero_unless_kept():
    flushed = _denormal_probe()
    assert flushed == {"product": [0.0, 0.0], "sum": [0.0, 0.0]}
    kept = _denormal_probe(DTF_DENORMALS="keep")
    assert kept["product"][0] == pytest.approx(1.5e-39, rel=1e-3)
    assert kept["sum"][1] == pytest.approx(6e-39, rel=1e-3)

"""Offline behaviour with the network really unreachable: HF_HUB_OFFLINE=1, and a Hub
endpoint on a closed local port. Cached repositories load; anything else is a one-line
OfflineError that says how to provide the files, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from _hub_helpers import LABELS, logits, single_threaded_torch, tiny_model  # noqa: F401 (autouse)
from _hub_server import FakeHub

from dtfcli.hub import load_model, save_pretrained

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def _closed_port_url() -> str:
    with socket.socket() as s:  # bind, note the port, close: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _probe(tmp_path: Path, env: dict[str, str], *sources: str) -> dict[str, dict]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "DTF_"))}
    proc = subprocess.run(
        [sys.executable, str(TESTS / "_hub_offline_probe.py"), str(tmp_path / "reference.pt"), *sources],
        env={**clean, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **env},
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return {r["source"]: r for r in map(json.loads, proc.stdout.splitlines())}


def test_offline_and_unreachable_hub(tmp_path):
    cache = tmp_path / "hf-cache"
    model = tiny_model()
    torch.save(logits(model), tmp_path / "reference.pt")
    with FakeHub() as hub:  # a user's earlier, online session fills the cache
        commit = hub.publish_folder("dtf-org/tiny", save_pretrained(model, tmp_path / "export", labels=LABELS))
        pinned = f"hf://dtf-org/tiny@{commit}"
        load_model("hf://dtf-org/tiny", endpoint=hub.endpoint, cache_dir=cache)
    unreachable = _closed_port_url()

    offline = _probe(tmp_path, {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_ENDPOINT": unreachable},
                     "hf://dtf-org/tiny", pinned, "hf://dtf-org/never-downloaded")
    no_network = _probe(tmp_path, {"HF_HUB_CACHE": str(cache), "HF_ENDPOINT": unreachable},
                        "hf://dtf-org/tiny", "hf://dtf-org/never-downloaded@v2")

    for result in (offline["hf://dtf-org/tiny"], offline[pinned], no_network["hf://dtf-org/tiny"]):
        assert result["ok"] and result["equal"] and result["location"] == pinned
    missing = offline["hf://dtf-org/never-downloaded"]
    assert missing["error"] == "OfflineError"
    assert "HF_HUB_OFFLINE" in missing["message"] and "hf download dtf-org/never-downloaded" in missing["message"]
    unreachable_result = no_network["hf://dtf-org/never-downloaded@v2"]
    assert unreachable_result["error"] == "OfflineError" and "unreachable" in unreachable_result["message"]
    assert "--revision v2" in unreachable_result["message"]
    assert all("\n" not in r.get("message", "") for r in (*offline.values(), *no_network.values()))


def test_an_unreachable_hub_is_detected_before_huggingface_hub_retries(tmp_path):
    torch.save(logits(tiny_model()), tmp_path / "reference.pt")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "DTF_")) and "proxy" not in k.lower()}
    env = {"HF_HUB_CACHE": str(tmp_path / "empty"), "HF_ENDPOINT": _closed_port_url(), "DTF_PROBE_REAL_SLEEP": "1"}
    proc = subprocess.run(
        [sys.executable, str(TESTS / "_hub_offline_probe.py"), str(tmp_path / "reference.pt"), "hf://dtf-org/tiny"],
        env={**clean, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **env},
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    (result,) = map(json.loads, proc.stdout.splitlines())
    assert result["error"] == "OfflineError" and "unreachable" in result["message"]
    assert "Retrying" not in proc.stderr  # huggingface_hub's back-off never started

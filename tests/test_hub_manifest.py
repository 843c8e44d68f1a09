"""Manifests: the repository's own, and manifests whose weights live in a file beside them,
at an https URL (served on 127.0.0.1) or in a Hub repository (a local endpoint)."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
import sys
import sysconfig
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from _hub_helpers import LABELS, logits, single_threaded_torch, tiny_model  # noqa: F401 (autouse)
from _hub_server import FakeHub

from dtfcli.hub import (
    ChecksumError,
    ConfigError,
    WeightsUnavailableError,
    list_manifests,
    load_model,
    read_manifest,
    save_pretrained,
)
from dtfcli.hub import manifest as manifest_module
from dtfcli.hub.manifest import REPO_WEIGHTS_DIR
from dtfcli.models import get_model_spec


def _write_manifest(folder: Path, name: str, location: str, sha256: str | None, **extra) -> Path:
    manifest = {
        "manifest_version": 1,
        "name": name,
        "architecture": "dtfnet_tiny",
        "num_classes": len(LABELS),
        "num_frames": 8,
        "labels": LABELS,
        "license": "apache-2.0",
        "weights": {"published": True, "location": location, "sha256": sha256},
        "metrics": {"synthetic-motion": {"top1": 90.0}},
        **extra,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(manifest))
    return path


def _export(tmp_path: Path) -> tuple[torch.nn.Module, Path, str]:
    model = tiny_model()
    weights = save_pretrained(model, tmp_path / "export", labels=LABELS) / "model.safetensors"
    return model, weights, hashlib.sha256(weights.read_bytes()).hexdigest()


def test_repository_manifests_are_valid_honest_and_match_the_paper_figures():
    manifests = list_manifests()
    assert {m.path.parent for m in manifests} == {REPO_WEIGHTS_DIR} and len(manifests) >= 3
    # The models dtf trained itself (the default model and its control) ship their weights
    # beside the manifest; the paper's models were never published by anyone.
    trained_here = {"dtfnet_tiny_synth12", "c2d_tiny_synth12_control"}
    assert trained_here <= {m.name for m in manifests}
    for manifest in manifests:
        if manifest.name in trained_here:
            assert manifest.weights.published and manifest.local_weights_path().is_file()
            continue
        assert not manifest.weights.published and manifest.weights.location is None
        ((dataset, values),) = manifest.metrics.items()
        paper = [f for f in get_model_spec(manifest.architecture).paper if f.frames == manifest.num_frames]
        assert paper and paper[0].top1[dataset] == values["top1"] and paper[0].crop == manifest.crop_size
    with pytest.raises(WeightsUnavailableError, match="dtfnet_r50_kinetics400_16f: weights not published yet"):
        load_model("dtfnet_r50_kinetics400_16f")


def test_manifest_with_a_relative_file_loads_by_name(tmp_path, monkeypatch):
    model, weights, digest = _export(tmp_path)
    (tmp_path / "manifests").mkdir()
    weights.rename(tmp_path / "manifests" / "tiny-motion.safetensors")
    _write_manifest(tmp_path / "manifests", "tiny_motion", "tiny-motion.safetensors", digest)
    monkeypatch.setenv("DTF_WEIGHTS_PATH", str(tmp_path / "manifests"))

    loaded, info = load_model("tiny_motion")

    assert torch.equal(logits(loaded), logits(model))
    assert (info.kind, info.manifest, info.sha256, info.labels) == ("manifest", "tiny_motion", digest, LABELS)
    assert info.license == "apache-2.0" and info.metrics == {"synthetic-motion": {"top1": 90.0}}
    assert "tiny_motion" in [m.name for m in list_manifests()]


def test_manifest_sha256_mismatch_and_escaping_paths_are_refused(tmp_path):
    _, weights, digest = _export(tmp_path)
    wrong = _write_manifest(tmp_path / "export", "wrong", "model.safetensors", hashlib.sha256(b"other").hexdigest())
    outside = _write_manifest(tmp_path / "export", "outside", "../../etc/passwd", digest)
    bad_key = _write_manifest(tmp_path / "export", "bad", "model.safetensors", digest, num_classes="five")

    with pytest.raises(ChecksumError, match="model.safetensors"):
        load_model(str(wrong))
    with pytest.raises(ConfigError, match="outside the manifest's folder"):
        load_model(str(outside))
    with pytest.raises(ConfigError, match="bad.json: key 'num_classes' must be a int"):
        read_manifest(bad_key)


@pytest.fixture
def file_server(tmp_path):
    """An http server on 127.0.0.1 serving tmp_path/site; yields (folder, base URL)."""
    site = tmp_path / "site"
    site.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_manifest_with_a_url_downloads_once_and_checks_sha256(tmp_path, monkeypatch, file_server):
    site, base = file_server
    model, weights, digest = _export(tmp_path)
    weights.rename(site / "tiny.safetensors")
    manifest = _write_manifest(tmp_path, "from_url", f"{base}/tiny.safetensors", digest)
    monkeypatch.setenv("DTF_CACHE", str(tmp_path / "cache"))

    loaded, info = load_model(str(manifest))
    (site / "tiny.safetensors").unlink()  # the second load needs only the verified cached copy
    again, _ = load_model(str(manifest))

    assert torch.equal(logits(loaded), logits(model)) and torch.equal(logits(again), logits(model))
    assert info.sha256 == digest


def test_tampered_download_is_refused_and_not_cached(tmp_path, monkeypatch, file_server):
    site, base = file_server
    _, weights, digest = _export(tmp_path)
    (site / "tiny.safetensors").write_bytes(weights.read_bytes()[:-1] + b"\0")
    manifest = _write_manifest(tmp_path, "tampered", f"{base}/tiny.safetensors", digest)
    monkeypatch.setenv("DTF_CACHE", str(tmp_path / "cache"))

    with pytest.raises(ChecksumError, match="tiny.safetensors"):
        load_model(str(manifest))
    assert not list((tmp_path / "cache").rglob("*.safetensors*"))


def test_manifest_with_an_hf_location_pins_the_sha256(tmp_path):
    model = tiny_model()
    with FakeHub() as hub:
        commit = hub.publish_folder("dtf-org/tiny", save_pretrained(model, tmp_path / "export", labels=LABELS))
        ref = f"hf://dtf-org/tiny@{commit}"
        _, info = load_model(ref, endpoint=hub.endpoint, cache_dir=tmp_path / "c")
        good = _write_manifest(tmp_path, "hub_good", ref, info.sha256)
        bad = _write_manifest(tmp_path, "hub_bad", ref, "0" * 64)
        other = _write_manifest(tmp_path, "hub_other", ref, info.sha256, num_classes=3, labels=None)

        loaded, loaded_info = load_model(str(good), endpoint=hub.endpoint, cache_dir=tmp_path / "c")
        with pytest.raises(ChecksumError):
            load_model(str(bad), endpoint=hub.endpoint, cache_dir=tmp_path / "c")
        with pytest.raises(ConfigError, match="hub_other.json: describes .*'num_classes': 3.* holds"):
            load_model(str(other), endpoint=hub.endpoint, cache_dir=tmp_path / "c")

    assert torch.equal(logits(loaded), logits(model))
    assert loaded_info.manifest == "hub_good" and loaded_info.location == ref


def test_a_wheel_carries_the_manifests_where_the_lookup_finds_them(tmp_path):
    pytest.importorskip("setuptools")
    # built from a copy: setuptools leaves build/ and *.egg-info in the source folder
    source = tmp_path / "source"
    junk = shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".*_cache", "runs")
    shutil.copytree(REPO_WEIGHTS_DIR.parent, source, ignore=junk)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
        + [str(source)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("dtfcli-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if "/data/share/dtfcli/weights/" in n}
    assert {p.name for p in REPO_WEIGHTS_DIR.glob("*.json")} <= shipped
    assert {"dtfcli/native/dtf_kernels.c", "dtfcli/native/dtf_attention.c"} <= set(names)  # kernel sources
    assert "dtfcli/data/video.py" in names and "dtfcli/models/dtf.py" in names


def test_manifests_installed_under_the_prefix_are_found_without_a_checkout(tmp_path, monkeypatch):
    prefix = tmp_path / "prefix"
    installed = prefix / "share" / "dtfcli" / "weights"
    shutil.copytree(REPO_WEIGHTS_DIR, installed)
    real_get_path = sysconfig.get_path
    monkeypatch.setattr(
        sysconfig, "get_path", lambda name, *a: str(prefix) if name == "data" else real_get_path(name, *a)
    )
    monkeypatch.setattr(manifest_module, "REPO_WEIGHTS_DIR", tmp_path / "no-checkout" / "weights")
    manifests = list_manifests()
    assert {m.path.parent for m in manifests} == {installed} and len(manifests) >= 3
    with pytest.raises(WeightsUnavailableError, match="dtfnet_r50_kinetics400_16f: weights not published yet"):
        load_model("dtfnet_r50_kinetics400_16f")

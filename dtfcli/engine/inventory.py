"""The model inventory behind `dtf models`: every registered model with its cost."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dtfcli.hub.manifest import list_manifests
from dtfcli.models import get_model_spec, list_models, model_cost


def model_inventory(
    pattern: str | None = None, with_cost: bool = True, progress: Callable[[Iterable[str]], Iterable[str]] | None = None
) -> list[dict]:
    """One row per registered model (optionally filtered by a shell pattern).

    Each row: name, family, description, frames, crop, views ("10x3"), params and
    GFLOPs per view at the default input (counted on the meta device), the paper's
    GFLOPs and top-1 for this clip length, and the weights manifests that name the model.
    """
    names = list_models(pattern)
    if not names:
        raise ValueError(f"no registered model matches {pattern!r}; see `dtf models`")
    manifests: dict[str, list] = {}
    for manifest in list_manifests():
        manifests.setdefault(manifest.architecture, []).append(manifest)
    rows = []
    for name in progress(names) if progress else names:
        spec = get_model_spec(name)
        row = {
            "name": name,
            "family": spec.family,
            "description": spec.description,
            "frames": spec.num_frames,
            "crop": spec.crop_size,
            "views": f"{spec.test_views[0]}x{spec.test_views[1]}",
            "cpu_sized": spec.cpu_sized,
        }
        # The paper's figure for this clip length (its crop may differ: see docs/models.md).
        paper = next((p for p in spec.paper if p.frames == spec.num_frames), None)
        row["paper_gflops"] = paper.gflops if paper else None
        row["paper_crop"] = paper.crop if paper else None
        row["paper_top1"] = dict(paper.top1) if paper else {}
        # Weights described by manifests in weights/ (or $DTF_WEIGHTS_PATH), published or not.
        row["weights"] = [
            {"manifest": m.name, "published": bool(m.weights.published), "location": m.weights.location}
            for m in manifests.get(name, [])
        ]
        if with_cost:
            cost = model_cost(name)
            row["params_m"] = round(cost.params / 1e6, 2)
            row["gflops"] = round(cost.gflops, 2)
            row["fft_gflops"] = round(cost.fft_gflops, 3)
        rows.append(row)
    return rows

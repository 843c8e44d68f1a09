"""Saving a model as a Hub-ready folder and pushing it to the Hugging Face Hub.

Folder layout (what `load_model` reads back, and what the Hub shows):

    config.json        model.config + labels + metrics (+ library name and format version)
    model.safetensors  the state dict; the same config travels in its metadata, so the file
                       alone is enough to rebuild the model
    labels.txt         one class name per line, in output order (when labels are known)
    README.md          model card with the Hub's YAML metadata header

Written by hand rather than with huggingface_hub's PyTorchModelHubMixin: see docs/weights.md.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData
from huggingface_hub.utils import HfHubHTTPError
from safetensors.torch import save_model
from torch import nn

from dtfcli.hub.checkpoint import CONFIG_METADATA_KEY
from dtfcli.hub.errors import ConfigError, OfflineError, WeightsError
from dtfcli.hub.fetch import offline_requested

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
LABELS_NAME = "labels.txt"
CARD_NAME = "README.md"
LIBRARY_NAME = "dtfcli"


def build_config(
    model: nn.Module, labels: list[str] | None = None, metrics: dict[str, dict[str, float]] | None = None
) -> dict[str, Any]:
    """config.json's content: the model's registry config plus labels and metrics."""
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "name" not in config:
        raise ConfigError("the model has no `config` (build it with dtfcli.models.create_model)")
    config = json.loads(json.dumps(config))  # tuples -> lists, and proves it is JSON-able
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(labels) != config["num_classes"]:
            raise ConfigError(f"labels: {len(labels)} names for a model with {config['num_classes']} classes")
    return {
        **config, "labels": labels, "metrics": metrics or {},
        "library_name": LIBRARY_NAME, "dtfcli_format": FORMAT_VERSION,
    }


def save_pretrained(
    model: nn.Module,
    folder: str | Path,
    labels: list[str] | None = None,
    metrics: dict[str, dict[str, float]] | None = None,
    license: str = "apache-2.0",
    description: str | None = None,
) -> Path:
    """Write `model` to `folder` in Hub layout (see module docstring). Returns the folder.

    Args:
        labels: class names in output order (len == num_classes).
        metrics: dataset -> {metric: value}, e.g. ``{"kinetics400": {"top1": 77.7}}``;
            written to config.json and, as model-index results, to the card's header.
        license: an SPDX-style identifier the Hub understands.
        description: a paragraph for the model card.
    """
    folder = Path(folder)
    config = build_config(model, labels, metrics)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    # save_model (not save_file) also handles tensors that share storage.
    save_model(model, str(folder / WEIGHTS_NAME),
               metadata={"format": "pt", CONFIG_METADATA_KEY: json.dumps(config)})
    labels_file = folder / LABELS_NAME
    if config["labels"] is not None:
        labels_file.write_text("\n".join(config["labels"]) + "\n", encoding="utf-8")
    elif labels_file.exists():
        labels_file.unlink()  # stale labels from an earlier save must not travel with new weights
    model_card(config, license, description).save(str(folder / CARD_NAME))
    return folder


def model_card(
    config: dict[str, Any], license: str = "apache-2.0", description: str | None = None
) -> ModelCard:
    """A model card whose YAML header carries the Hub metadata (library, licence, task,
    tags, and metrics as model-index results)."""
    name = config["name"]
    eval_results = [
        EvalResult(task_type="video-classification", dataset_type=dataset, dataset_name=dataset,
                   metric_type=metric, metric_value=float(value))
        for dataset, values in (config.get("metrics") or {}).items()
        for metric, value in values.items()
    ]
    data = ModelCardData(
        library_name=LIBRARY_NAME, license=license, pipeline_tag="video-classification",
        tags=["video-classification", "dtf", "dynamic-temporal-filtering", config.get("family", ""), name],
        model_name=name, eval_results=eval_results or None,
    )
    labels = config.get("labels")
    views = config.get("test_views") or ()
    crop = config.get("crop_size")
    body = "\n".join([
        f"# {name}",
        "",
        description
        or f"A `{name}` video classifier from `dtf` (Dynamic Temporal Filtering, Long et al., ECCV 2022).",
        "",
        "| | |", "|---|---|",
        f"| architecture | `{name}` ({config.get('family')}) |",
        f"| classes | {config['num_classes']} |",
        f"| input | {config['num_frames']} frames, {crop} x {crop} crop |",
        f"| test views | {' x '.join(str(v) for v in views)} (clips x crops){_symmetric(config)} |",
        f"| labels | {'labels.txt' if labels else 'not recorded'} |",
        "",
        "## Use",
        "",
        "```bash",
        "dtf predict clip.mp4 --model hf://<this repository>",
        "```",
        "",
        "```python",
        "from dtfcli.hub import load_model",
        'model, info = load_model("hf://<this repository>")',
        "```",
        "",
    ])
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def push_to_hub(
    folder_or_model: str | Path | nn.Module,
    repo_id: str,
    *,
    labels: list[str] | None = None,
    metrics: dict[str, dict[str, float]] | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload dtf model",
    endpoint: str | None = None,
) -> str:
    """Upload a saved folder (or a model, saved to a temporary folder first) to a Hub model
    repository, creating it if needed. Returns ``hf://repo_id@<commit>``, which loads
    exactly what was pushed.

    Args:
        labels, metrics: as for `save_pretrained` (used when a model is given).
        revision: the branch to push to (created from the default branch if missing).
        token, endpoint: passed to `huggingface_hub.HfApi` (default: HF_TOKEN / the login,
            HF_ENDPOINT).

    Raises:
        ConfigError: the folder lacks config.json or model.safetensors.
        OfflineError: offline mode is on or the Hub cannot be reached.
        WeightsError: the Hub refused (e.g. no write token: set HF_TOKEN or `hf auth login`).
    """
    if offline_requested():
        raise OfflineError(f"cannot push to hf://{repo_id}: offline mode is on (HF_HUB_OFFLINE/DTF_OFFLINE)")
    if isinstance(folder_or_model, nn.Module):
        with tempfile.TemporaryDirectory(prefix="dtf-push-") as tmp:
            save_pretrained(folder_or_model, tmp, labels=labels, metrics=metrics)
            return push_to_hub(tmp, repo_id, private=private, token=token, revision=revision,
                               commit_message=commit_message, endpoint=endpoint)
    folder = Path(folder_or_model)
    for needed in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / needed).is_file():
            raise ConfigError(f"{folder}: no {needed}; write the folder with save_pretrained first")
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True,
                        **({"private": private} if private is not None else {}))
        if revision is not None:  # upload_folder needs the branch to exist
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                                   revision=revision, commit_message=commit_message,
                                   allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, LABELS_NAME, CARD_NAME])
    except HfHubHTTPError as exc:
        raise WeightsError(f"push to hf://{repo_id} failed: {str(exc).splitlines()[0]}") from None
    except (ConnectionError, OSError) as exc:
        raise OfflineError(
            f"cannot push to hf://{repo_id}: the Hub is unreachable ({type(exc).__name__})"
        ) from None
    return f"hf://{repo_id}@{commit.oid}"


def _symmetric(config: dict) -> str:
    names = list(config.get("symmetries") or ())
    return f", each also {', '.join(names)} ({2 ** len(names)} in all)" if names else ""

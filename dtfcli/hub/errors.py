"""Typed errors of weight loading and saving.

Every error is one line that names the file, key or repository involved, so the CLI can
print it as is (no traceback). Catch `WeightsError` for all of them; the subclasses let a
caller (or a test) tell the cases apart.
"""

from __future__ import annotations

from collections.abc import Sequence


class WeightsError(Exception):
    """Base class: something about a model's weights, config or their source is wrong."""


class WeightsNotFoundError(WeightsError):
    """The source names nothing that exists: no such file, model, manifest, repository,
    revision or file in a repository."""


class WeightsUnavailableError(WeightsError):
    """The model is known but has no weights to load (an architecture without published
    weights, or a manifest marked as not yet published)."""


class ConfigError(WeightsError):
    """A config.json, safetensors metadata or manifest is missing or malformed (names the key)."""


class ClassCountMismatchError(WeightsError):
    """The weights were trained for a different number of classes than asked for (inference)."""


class ChecksumError(WeightsError):
    """A file's sha256 differs from the one it was published with (tampered or corrupt)."""


class UnsafeCheckpointError(WeightsError):
    """A legacy checkpoint holds pickled objects other than tensors and plain containers;
    it was refused by ``torch.load(weights_only=True)`` and nothing in it ran."""


class OfflineError(WeightsError):
    """A file had to be fetched but the Hub or download site cannot be reached (or offline
    mode is on) and no local copy exists; the message says how to provide the file."""


def _names(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


class StateDictMismatchError(WeightsError):
    """A state dict does not fit the model. Holds the full diff for programmatic use:

    Attributes:
        missing: keys the model has and the file lacks.
        unexpected: keys the file has and the model lacks.
        wrong_shape: (key, shape in file, shape in model) for keys in both.
    """

    def __init__(
        self,
        where: str,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        wrong_shape: Sequence[tuple[str, tuple[int, ...], tuple[int, ...]]] = (),
    ):
        self.where = where
        self.missing, self.unexpected, self.wrong_shape = list(missing), list(unexpected), list(wrong_shape)
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing: {_names(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected: {_names(self.unexpected)}")
        if self.wrong_shape:
            shapes = [f"{k} file {tuple(a)} vs model {tuple(b)}" for k, a, b in self.wrong_shape]
            parts.append(f"{len(shapes)} wrong shape: {_names(shapes)}")
        super().__init__(f"{where} does not fit the model: " + "; ".join(parts))


class KeyMismatchError(StateDictMismatchError):
    """Keys are missing from or unexpected in the file (any shape problems are listed too)."""


class ShapeMismatchError(StateDictMismatchError):
    """All keys match but some tensors have the wrong shape."""

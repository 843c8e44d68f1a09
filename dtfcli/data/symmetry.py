"""Label symmetries: transforms of a clip that turn every class of a label set into a class.

A clip mirrored left-right shows the opposite horizontal motion and the opposite turn; played
backwards, it shows the reverse of its motion.  When a label set names such pairs ("left to
right" / "right to left"), a model can be asked about the transformed clip too and its answer
mapped back, a test-time view that is exact for the label set rather than approximate.

A model's config lists them as ``"symmetries": {transform: label_map}``: ``transform`` one of
:data:`TRANSFORMS`, ``label_map[c]`` the class that a clip of class ``c`` becomes under it.
The test views then include every combination of the listed transforms (2, 4 or 8 of them,
the untransformed clip included): :func:`symmetry_group`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

#: Transform name -> the axis it flips in a batch of views (N, C, T, H, W).
TRANSFORMS = {"reverse": 2, "vflip": 3, "hflip": 4}


def check_symmetries(value: Any, num_classes: int, where: str = "symmetries") -> dict[str, tuple[int, ...]]:
    """``value`` as {transform: label map}, in :data:`TRANSFORMS` order; ValueError naming
    ``where`` if it is not a mapping of known transforms to involutive permutations of
    ``range(num_classes)`` (a flip applied twice is the identity, so must be its map)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must map a transform ({', '.join(TRANSFORMS)}) to a list of class indices")
    out: dict[str, tuple[int, ...]] = {}
    for name in value:
        if name not in TRANSFORMS:
            raise ValueError(f"{where}: unknown transform {name!r} (choose from {', '.join(TRANSFORMS)})")
    for name in TRANSFORMS:
        if name not in value:
            continue
        mapping = value[name]
        if not (isinstance(mapping, Sequence) and not isinstance(mapping, str)
                and all(isinstance(c, int) and not isinstance(c, bool) for c in mapping)):
            raise ValueError(f"{where}.{name} must be a list of class indices")
        if sorted(mapping) != list(range(num_classes)):
            raise ValueError(f"{where}.{name} must list each of the {num_classes} class indices once")
        if any(mapping[c] != k for k, c in enumerate(mapping)):
            raise ValueError(f"{where}.{name} must map back what it maps (a transform applied twice is none)")
        out[name] = tuple(mapping)
    return out


def symmetry_group(symmetries: Mapping[str, Sequence[int]]) -> list[tuple[tuple[int, ...], list[int]]]:
    """Every combination of the transforms, the identity first: (axes to flip in (N, C, T, H,
    W), label map).  ``logits(views.flip(axes))[:, label_map]`` are then logits over the classes
    of the untransformed views."""
    names = [n for n in TRANSFORMS if n in symmetries]
    if not names:
        return [((), [])]
    num_classes = len(symmetries[names[0]])
    group = []
    for size in range(len(names) + 1):
        for subset in combinations(names, size):
            label_map = list(range(num_classes))
            for name in subset:  # the flips commute, and so do their (involutive) maps
                label_map = [symmetries[name][c] for c in label_map]
            group.append((tuple(TRANSFORMS[n] for n in subset), label_map))
    return group


def symmetries_from_pairs(classes: Sequence[str], pairs: Mapping[str, Sequence[tuple[int, int]]]
                          ) -> dict[str, list[int]]:
    """Label maps from the class pairs each transform swaps (other classes map to themselves)."""
    out = {}
    for name, swapped in pairs.items():
        mapping = list(range(len(classes)))
        for a, b in swapped:
            mapping[a], mapping[b] = b, a
        out[name] = mapping
    check_symmetries(out, len(classes))
    return out

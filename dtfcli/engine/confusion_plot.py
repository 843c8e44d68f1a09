"""The confusion matrix as a PNG that stays readable from a dozen classes to Kinetics' 400.

Cells are coloured by the share of the true class's videos (each row sums to 1), so rare and
frequent classes read alike. Up to ``NAMED_LIMIT`` classes the axes carry the class names
(and, up to ``ANNOTATE_LIMIT``, every non-empty cell its count); beyond that no name would
be legible, so the axes carry class indices (the rows of confusion.csv) and a panel beside
the matrix lists the largest confusions by name.

Drawn with matplotlib's object API on an Agg canvas (no pyplot): no display needed, and the
caller's own pyplot state is left alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

NAMED_LIMIT = 40
ANNOTATE_LIMIT = 25


def _index_step(n: int) -> int:
    for step in (5, 10, 25, 50, 100):
        if n / step <= 20:
            return step
    return 200


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 1] + "\u2026"


def plot_confusion(matrix: np.ndarray, names: list[str], path: str | Path, *, title: str = "",
                   confusions: list[dict[str, Any]] | None = None) -> Path:
    """Write ``matrix`` (true classes x predicted classes, the columns may have one extra
    "other" column) with row and column ``names`` to ``path`` (PNG); return the path.
    ``confusions``: the largest off-diagonal cells (see metrics.top_confusions), listed
    beside a large matrix."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    rows, cols = matrix.shape
    support = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, support, out=np.zeros(matrix.shape, float), where=support > 0)
    named = rows <= NAMED_LIMIT
    if named:
        longest = max((len(n) for n in names), default=1)
        label_in = min(longest, 40) * 0.075  # inches taken by the tick labels
        cell = 0.42 if rows <= ANNOTATE_LIMIT else 0.26
        side = max(4.0, cell * cols)
        fig = Figure(figsize=(side + label_in + 1.8, side + label_in + 1.2), dpi=100)
        ax = fig.add_axes([(label_in + 0.4) / (side + label_in + 1.8), (label_in + 0.5) / (side + label_in + 1.2),
                           side / (side + label_in + 1.8), side / (side + label_in + 1.2)])
    else:
        fig = Figure(figsize=(22, 14), dpi=100)
        ax = fig.add_axes([0.04, 0.07, 0.55, 0.85])
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="equal")
    colorbar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    colorbar.set_label("share of the true class's videos")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title, fontsize=11)
    if named:
        size = 9 if rows <= ANNOTATE_LIMIT else 7
        ax.set_xticks(range(cols), [_short(n, 40) for n in names[:cols]], rotation=90, fontsize=size)
        ax.set_yticks(range(rows), [_short(n, 40) for n in names[:rows]], fontsize=size)
        if rows <= ANNOTATE_LIMIT:
            for r in range(rows):
                for c in range(cols):
                    if matrix[r, c]:
                        ax.text(c, r, str(int(matrix[r, c])), ha="center", va="center", fontsize=8,
                                color="white" if share[r, c] > 0.5 else "black")
    else:
        step = _index_step(rows)
        ax.set_xticks(range(0, cols, step))
        ax.set_yticks(range(0, rows, step))
        ax.tick_params(labelsize=9)
        ax.set_xlabel("predicted class (index: row of confusion.csv)")
        ax.set_ylabel("true class (index: row of confusion.csv)")
        lines = ["Largest confusions: true \u2192 predicted, videos (share of the true class)", ""]
        for item in (confusions or [])[:45]:
            lines.append(f"{item['true_index']:>3} {_short(item['true'], 28):<28} \u2192 {item['predicted_index']:>3} "
                         f"{_short(item['predicted'], 28):<28} {item['count']:>4} ({item['share']:.0f}%)")
        if not confusions:
            lines.append("(none: every video was classified correctly)")
        fig.text(0.655, 0.93, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig).print_png(str(path))
    return path

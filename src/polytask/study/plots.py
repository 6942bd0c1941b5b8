"""The report's figures (matplotlib, off-screen): learning curves, training losses, affinity."""

from __future__ import annotations

import math
from pathlib import Path

from polytask.study.stats import Summary


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")  # no display, no network: figures only go to files
    import matplotlib.pyplot as plt

    return plt


def learning_curve(
    path: Path,
    target: str,
    metric: str,
    split: str,
    curves: dict[str, list[tuple[int, Summary]]],
    baseline: str,
) -> Path:
    """Metric against the number of training labels, one line per arm (mean over seeds) with a
    min-max band over seeds; the x axis is logarithmic.

    Args:
        path: the PNG to write.
        target: the target task (title).
        metric: the metric name (y label).
        split: dev or test (y label).
        curves: arm -> [(labels, summary over seeds)] in budget order.
        baseline: the baseline arm, drawn dashed.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for arm, points in curves.items():
        points = [(x, s) for x, s in points if s.n > 0]
        if not points:
            continue
        xs = [x for x, _ in points]
        means = [s.mean for _, s in points]
        line, = ax.plot(xs, means, marker="o", label=arm, linestyle="--" if arm == baseline else "-")
        if any(s.n > 1 for _, s in points):
            ax.fill_between(xs, [s.min for _, s in points], [s.max for _, s in points],
                            color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xscale("log")
    # Ticks at the budgets themselves, written as plain numbers.
    ticks = sorted({x for points in curves.values() for x, s in points if s.n > 0})
    if ticks:
        from matplotlib.ticker import NullLocator

        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("training labels (log scale)")
    ax.set_ylabel(f"{metric} ({split})")
    ax.set_title(f"{target}: learning curves (mean over seeds, band = min-max)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def loss_curves(
    path: Path,
    target: str,
    runs: dict[str, dict[str, list[tuple[list[int], list[float]]]]],
    arms: list[str],
) -> Path:
    """Training loss against step: one panel per budget, one colour per arm, one line per seed.

    Args:
        path: the PNG to write.
        target: the target task (title).
        runs: budget -> arm -> [(steps, losses)] (one per seed).
        arms: arm order (fixes the colours).
    """
    plt = _pyplot()
    budgets = list(runs)
    cols = min(3, max(1, len(budgets)))
    rows = math.ceil(len(budgets) / cols) if budgets else 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), dpi=100, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, budget in enumerate(budgets):
        ax = axes[i // cols][i % cols]
        for a_i, arm in enumerate(arms):
            for s_i, (steps, losses) in enumerate(runs[budget].get(arm, [])):
                ax.plot(steps, losses, color=colours[a_i % len(colours)], alpha=0.8, linewidth=1,
                        marker="o", markersize=3, label=arm if s_i == 0 else None)
        ax.set_title(f"budget {budget}", fontsize="medium")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small")
    for j in range(len(budgets), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(f"{target}: training loss (one line per seed)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def affinity_heatmap(path: Path, tasks: list[str], matrix: list[list[float]]) -> Path:
    """Task affinity as a heatmap (row task helped by column task), values written in the cells."""
    plt = _pyplot()
    n = len(tasks)
    fig, ax = plt.subplots(figsize=(1.2 * n + 3, 1.0 * n + 2), dpi=100)
    finite = [v for row in matrix for v in row if v is not None and math.isfinite(v)]
    lim = max((abs(v) for v in finite), default=1.0) or 1.0
    values = [[float("nan") if v is None else v for v in row] for row in matrix]
    im = ax.imshow(values, cmap="RdBu", vmin=-lim, vmax=lim)
    ax.set_xticks(range(n), tasks, rotation=45, ha="right")
    ax.set_yticks(range(n), tasks)
    for i in range(n):
        for j in range(n):
            v = values[i][j]
            if math.isfinite(v):
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize="small",
                        color="white" if abs(v) > 0.6 * lim else "black")
    fig.colorbar(im, ax=ax)
    ax.set_title("task affinity")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

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
    seeds: dict[str, list[tuple[int, list[float]]]] | None = None,
) -> Path:
    """Metric against the number of training labels, one line per arm (mean over seeds) with
    error bars (± one standard deviation), a min-max band and every seed's score as a point
    (spread a little sideways so arms at one budget do not hide each other); the x axis is
    logarithmic.

    Args:
        path: the PNG to write.
        target: the target task (title).
        metric: the metric name (y label).
        split: dev or test (y label).
        curves: arm -> [(labels, summary over seeds)] in budget order.
        baseline: the baseline arm, drawn dashed.
        seeds: arm -> [(labels, [score of each seed])], drawn as points.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12, 5.5), dpi=100)
    n_arms = max(1, len(curves))
    for a_i, (arm, points) in enumerate(curves.items()):
        points = [(x, s) for x, s in points if s.n > 0]
        if not points:
            continue
        xs = [x for x, _ in points]
        means = [s.mean for _, s in points]
        line, = ax.plot(xs, means, marker="o", label=arm, linestyle="--" if arm == baseline else "-")
        colour = line.get_color()
        if any(s.n > 1 for _, s in points):
            ax.errorbar(xs, means, yerr=[s.std if s.n > 1 else 0.0 for _, s in points], fmt="none",
                        ecolor=colour, capsize=4, linewidth=1)
            ax.fill_between(xs, [s.min for _, s in points], [s.max for _, s in points],
                            color=colour, alpha=0.12, linewidth=0)
        # Per-seed points, shifted by a few percent per arm on the log axis.
        shift = 1.0 + 0.04 * (a_i - (n_arms - 1) / 2)
        for x, values in (seeds or {}).get(arm, []):
            ax.scatter([x * shift] * len(values), values, color=colour, s=14, alpha=0.7, zorder=3,
                       edgecolors="none")
    ax.set_xscale("log")
    # Ticks at the budgets themselves, written as plain numbers.
    ticks = sorted({x for points in curves.values() for x, s in points if s.n > 0})
    if ticks:
        from matplotlib.ticker import NullLocator

        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("training labels (log scale)")
    ax.set_ylabel(f"{metric} ({split})")
    ax.set_title(f"{target}: learning curves (mean ± std over seeds, band = min-max, dots = seeds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


SEED_STYLES = ["-", "--", ":", "-."]
SEED_MARKERS = ["o", "s", "^", "D", "v", "P"]


def step_curves(
    path: Path,
    title: str,
    ylabel: str,
    runs: dict[str, dict[str, list[tuple[int, list[int], list[float]]]]],
    arms: list[str],
) -> Path:
    """A value against the training step: one panel per budget, one colour per arm, and within an
    arm one line style and marker per seed (named in the legend).

    Args:
        path: the PNG to write.
        title: the figure's title.
        ylabel: what the y axis holds.
        runs: budget -> arm -> [(seed, steps, values)].
        arms: arm order (fixes the colours).
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    budgets = list(runs)
    cols = min(2, max(1, len(budgets)))
    rows = math.ceil(len(budgets) / cols) if budgets else 1
    fig, axes = plt.subplots(rows, cols, figsize=(12, 4.2 * rows), dpi=100, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, budget in enumerate(budgets):
        ax = axes[i // cols][i % cols]
        for a_i, arm in enumerate(arms):
            for s_i, (seed, steps, values) in enumerate(runs[budget].get(arm, [])):
                ax.plot(steps, values, color=colours[a_i % len(colours)], alpha=0.85, linewidth=1.2,
                        linestyle=SEED_STYLES[s_i % len(SEED_STYLES)],
                        marker=SEED_MARKERS[s_i % len(SEED_MARKERS)], markersize=4,
                        label=f"{arm} seed {seed}")
        ax.set_title(f"budget {budget}", fontsize="medium")
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", ncol=2)
    for j in range(len(budgets), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def loss_curves(
    path: Path,
    target: str,
    runs: dict[str, dict[str, list[tuple[int, list[int], list[float]]]]],
    arms: list[str],
) -> Path:
    """Training loss against step (``step_curves``): budget -> arm -> [(seed, steps, losses)]."""
    return step_curves(path, f"{target}: training loss (one line per seed)", "training loss", runs, arms)


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

"""Pictures of a study: the Pareto front and the hypervolume curve (matplotlib, no display)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def _pyplot():  # noqa: ANN202 - matplotlib's module
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_plot(table: pd.DataFrame, objectives: Mapping[str, str], path: Path) -> Path:
    """The primary objective against each other one: full-budget trials as dots, the front as
    large connected markers with the knee ringed, trials stopped early as grey crosses (their
    values are partial)."""
    plt = _pyplot()
    primary, *others = list(objectives)
    others = others or [primary]
    figure, axes = plt.subplots(1, len(others), figsize=(5.5 * len(others), 4.5), squeeze=False)
    finished = table[table["status"] == "finished"]
    stopped = table[table["status"] == "stopped"]
    front = finished[finished["on_front"]]
    for axis, other in zip(axes[0], others):
        axis.scatter(stopped[other], stopped[primary], marker="x", color="0.6", label="stopped early (partial)")
        axis.scatter(finished[other], finished[primary], color="tab:blue", alpha=0.6, label="full budget")
        if len(objectives) == 2:
            line = front.sort_values(other)
            axis.plot(line[other], line[primary], color="tab:red", drawstyle="steps-post", alpha=0.6)
        axis.scatter(front[other], front[primary], s=80, color="tab:red", label="Pareto front")
        knee = front[front["knee"]]
        axis.scatter(knee[other], knee[primary], s=220, facecolors="none", edgecolors="black", label="knee")
        for _, row in front.iterrows():
            axis.annotate(row["trial"], (row[other], row[primary]), fontsize=7, xytext=(4, 4), textcoords="offset points")
        axis.set_xlabel(f"{other} ({objectives[other]})")
        axis.set_ylabel(f"{primary} ({objectives[primary]})")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle("Pareto front of full-budget trials")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def hypervolume_plot(elapsed_s: list[float], values: list[float], path: Path) -> Path:
    """Hypervolume of the full-budget trials' front against study time."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.step(elapsed_s, values, where="post", marker="o")
    axis.set_xlabel("study time (s)")
    axis.set_ylabel("hypervolume")
    axis.set_title("Hypervolume of the front over the study")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def recipes_plot(recipes: pd.DataFrame, objectives: Mapping[str, str], targets: list[tuple[str, float]], path: Path) -> Path:
    """The primary objective against each other one over recipes: every trial's course epoch by
    epoch as a grey line, the front over recipes as a red staircase with the knee ringed, and
    the targets of the primary objective as dashed lines."""
    plt = _pyplot()
    primary, *others = list(objectives)
    others = others or [primary]
    # A study that ran no epoch (its budget ended first) has a table without these columns.
    recipes = recipes.reindex(columns=list(dict.fromkeys([*recipes.columns, "trial", "epoch", "on_front", "knee", *objectives])))
    figure, axes = plt.subplots(1, len(others), figsize=(6 * len(others), 4.5), squeeze=False)
    front = recipes[recipes["on_front"].fillna(False).astype(bool)]
    for axis, other in zip(axes[0], others):
        for _, course in recipes.groupby("trial", sort=False):
            course = course.sort_values("epoch")
            axis.plot(course[other], course[primary], color="0.75", linewidth=0.8, marker=".", markersize=3)
        line = front.sort_values(other)
        if len(objectives) == 2:
            axis.plot(line[other], line[primary], color="tab:red", drawstyle="steps-post", alpha=0.7)
        axis.scatter(front[other], front[primary], s=60, color="tab:red", label="front over recipes", zorder=3)
        knee = front[front["knee"].fillna(False).astype(bool)]
        axis.scatter(knee[other], knee[primary], s=200, facecolors="none", edgecolors="black", label="knee", zorder=4)
        for _, row in front.iterrows():
            axis.annotate(f"{row['trial']} ep {int(row['epoch'])}", (row[other], row[primary]), fontsize=7, xytext=(4, -10), textcoords="offset points")
        for metric, value in targets:
            if metric == primary:
                axis.axhline(value, color="tab:green", linestyle="--", linewidth=1)
                axis.annotate(f"target {value:g}", (axis.get_xlim()[1], value), fontsize=7, ha="right", va="bottom", color="tab:green")
        axis.set_xlabel(f"{other} ({objectives[other]})")
        axis.set_ylabel(f"{primary} ({objectives[primary]})")
        axis.grid(alpha=0.3)
    axes[0][0].plot([], [], color="0.75", label="a trial, epoch by epoch")
    axes[0][0].legend(fontsize=8, loc="lower right")
    figure.suptitle("Front over recipes (every epoch of every trial)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def fronts_plot(fronts: pd.DataFrame, objectives: Mapping[str, str], studies: list[str], path: Path) -> Path:
    """Several studies' fronts on one set of axes: the primary objective against each other
    one, a staircase a study (with two objectives), the first of `studies` (the newest) boldest."""
    plt = _pyplot()
    primary, *others = list(objectives)
    others = others or [primary]
    figure, axes = plt.subplots(1, len(others), figsize=(6 * len(others), 4.5), squeeze=False)
    for axis, other in zip(axes[0], others):
        for order, study in reversed(list(enumerate(studies))):
            points = fronts[fronts["study"] == study]
            if points.empty or other not in points or primary not in points:
                continue
            line = points.sort_values(other)
            width, size = (2.2, 50) if order == 0 else (1.0, 20)
            color = f"C{order % 10}"
            if len(objectives) == 2:
                axis.plot(line[other], line[primary], drawstyle="steps-post", color=color, linewidth=width, alpha=0.8)
            axis.scatter(line[other], line[primary], s=size, color=color, label=f"{study} ({len(points)})", zorder=3 + (order == 0))
        axis.set_xlabel(f"{other} ({objectives[other]})")
        axis.set_ylabel(f"{primary} ({objectives[primary]})")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right", title="study (front points)", title_fontsize=7)
    figure.suptitle("Fronts of several studies")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

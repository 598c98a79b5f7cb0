"""Throughput vs peak memory of a tune study's runs, with the Pareto front (nothing faster for less memory)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..study.plots import _pyplot, save


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (memory, throughput) points no other point beats on both: less or equal memory and more throughput."""
    front: list[tuple[float, float]] = []
    for memory, speed in sorted(points, key=lambda item: (item[0], -item[1])):
        if not front or speed > front[-1][1]:
            front.append((memory, speed))
    return front


def plot(runs: Sequence[Mapping[str, Any]], png: Path, svg: Path, unit: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(12.0, 6.75))
    usable = [run for run in runs if run["status"] == "ok" and run["peak_mib"] is not None
              and run["samples_per_second"] is not None]
    for label in sorted({run["label"] for run in usable}):
        mine = [run for run in usable if run["label"] == label]
        ax.scatter([run["peak_mib"] / 1024 for run in mine], [run["samples_per_second"] for run in mine],
                   label=label, s=40)
        for run in mine:
            ax.annotate(str(run["micro_batch"]), (run["peak_mib"] / 1024, run["samples_per_second"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=9)
    front = pareto_front([(run["peak_mib"] / 1024, run["samples_per_second"]) for run in usable])
    if front:
        xs = [memory for memory, _ in front]
        ys = [speed for _, speed in front]
        ax.step(xs, ys, where="post", color="black", linewidth=1.5, label="Pareto front")
        ax.scatter(xs, ys, facecolors="none", edgecolors="black", s=140, linewidths=1.5)
    ax.set_xlabel(f"peak memory per {unit} (GiB)")
    ax.set_ylabel("steady samples/s")
    ax.set_title("Throughput vs peak memory (labels: micro-batch)")
    ax.grid(True, alpha=0.3)
    if usable:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    save(fig, png, svg)

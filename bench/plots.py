"""The suite's plots: latency CDFs and server memory against connection count.

Rendered with matplotlib's Agg backend (no display) into PNG files beside the
results, which docs/performance.md shows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

# The backend is chosen before pyplot loads.
import matplotlib.pyplot as plt

# One colour per server, the same in every plot.
COLOURS = {
    "ours": "tab:blue",
    "ours-scale": "tab:cyan",
    "P0": "tab:green",
    "P1": "tab:red",
    "P1-redis": "tab:orange",
}


def slug(title: str) -> str:
    """A file name for a plot title."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def render_cdf(title: str, series: dict[str, list[float]], path: Path) -> None:
    """One latency CDF (milliseconds, log scale) with a line per server."""
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for name, samples in series.items():
        if not samples:
            continue
        ordered = sorted(samples)
        fractions = [(rank + 1) / len(ordered) for rank in range(len(ordered))]
        axes.step(
            ordered,
            fractions,
            where="post",
            label=f"{name} (n={len(ordered)})",
            color=COLOURS.get(name),
        )
    axes.set_xscale("log")
    axes.set_xlabel("latency (ms, log scale)")
    axes.set_ylabel("fraction of samples at or below")
    axes.set_ylim(0, 1.01)
    axes.axhline(0.99, color="grey", linewidth=0.6, linestyle=":")
    axes.grid(True, which="both", linewidth=0.3)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def render_memory(sessions: Sequence[dict[str, Any]], path: Path) -> None:
    """Server RSS growth per open connection against the number open, per server.

    From B1's ``rss_curve`` (sampled while sockets opened) of the largest
    connection count each server ran.
    """
    largest: dict[str, dict[str, Any]] = {}
    for session in sessions:
        seen = largest.get(session["server"])
        if seen is None or session["connections"] > seen["connections"]:
            largest[session["server"]] = session
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for name, session in largest.items():
        points = [
            (count, (rss - session["rss_before_kib"]) / count)
            for count, rss in session["rss_curve"]
            if count > 0
        ]
        if points:
            axes.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                marker="o",
                markersize=3,
                label=name,
                color=COLOURS.get(name),
            )
    axes.set_xlabel("open connections")
    axes.set_ylabel("server memory per connection (KiB)")
    axes.set_ylim(bottom=0)
    axes.grid(True, linewidth=0.3)
    axes.set_title("B1 memory per connection against connection count", fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def render_all(
    cdfs: dict[str, dict[str, list[float]]],
    connection_sessions: Sequence[dict[str, Any]],
    directory: Path,
) -> list[Path]:
    """Every plot of one run into ``directory`` (emptied first); returns the files."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.png"):
        old.unlink()
    written: list[Path] = []
    for title, series in sorted(cdfs.items()):
        path = directory / f"{slug(title)}.png"
        render_cdf(title, series, path)
        written.append(path)
    if any(session.get("rss_curve") for session in connection_sessions):
        path = directory / "b1-memory-per-connection.png"
        render_memory(connection_sessions, path)
        written.append(path)
    return written

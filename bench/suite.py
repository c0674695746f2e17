"""Issue 5's benchmark suite, every module in one invocation.

Run from the repository root::

    .venv/bin/python -m bench                          # full profile
    .venv/bin/python -m bench --profile quick          # a few minutes per module
    .venv/bin/python -m bench --only B1,B9 --smoke --output /tmp/r.json

Each module measures ours beside its baselines in the same run (see the
module docstrings and bench/README.md):

=====================  ==========================  ====================================
ids                    module                      baselines
=====================  ==========================  ====================================
B1, B2                 ``bench.connections``       P0, P1, P1-redis; scale mode rows
B3, B4, B6             ``bench.mixed_traffic``     P0, P1
B5                     ``bench.reconnect_storm``   P0 (reconnect only)
B7                     ``bench.compression``       the other deflate settings
PUB                    ``bench.publish_throughput``  bare sqlite3, bare psycopg; ours in-process
XP                     ``bench.cross_process``     the in-process publish (HTTP POST)
B8                     ``bench.client_desktop``    a minimal PySide6 tray app
B9                     ``bench.client_store``      bare sqlite3, the idle event loop
B10                    ``bench.fallback``          the WebSocket (beside the SSE stream)
=====================  ==========================  ====================================

This process is the load generator, pinned to CPU 1 (B3, B4 and B6 spread
their sockets over reader processes, ``bench/load_generator.py``, on CPU 1
too); everything under test runs on CPU 0. It writes
``bench/results/latest.json`` (``--output``) in the format issue 5 names,
``<name>-raw.json`` beside it with every module's settings and samples, the
table as Markdown in ``<name>.md``, and the plots into ``<name>-plots/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import (
    PROFILE_NAMES,
    RESULTS_DIR,
    Outcome,
    machine,
    pin_to_client_cpu,
    raise_fd_limit,
)
from bench.plots import render_all

RESULTS_PATH = RESULTS_DIR / "latest.json"
# Module per benchmark id, in the order they run; one module may serve several ids.
MODULES = {
    "B1": "bench.connections",
    "B2": "bench.connections",
    "B3": "bench.mixed_traffic",
    "B4": "bench.mixed_traffic",
    "B6": "bench.mixed_traffic",
    "B5": "bench.reconnect_storm",
    "B7": "bench.compression",
    "PUB": "bench.publish_throughput",
    "XP": "bench.cross_process",
    "B8": "bench.client_desktop",
    "B9": "bench.client_store",
    "B10": "bench.fallback",
}
PACKAGES = (
    "uvicorn",
    "websockets",
    "uvloop",
    "django",
    "channels",
    "channels-redis",
    "daphne",
    "redis",
    "httpx",
    "psycopg",
    "PySide6-Essentials",
    "qasync",
)
# Sockets of the largest run live in this process; the servers inherit the limit.
OPEN_FILES = 5000 * 2 + 1024


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Issues 5 and 14's benchmarks: ours beside its peers, in one invocation.",
    )
    parser.add_argument("--profile", choices=PROFILE_NAMES, default="full")
    parser.add_argument(
        "--only", default=",".join(MODULES), help=f"some of {','.join(MODULES)} (default: all)"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny counts: proves every module runs, measures nothing",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="results JSON file")
    options = parser.parse_args(argv)
    options.only = [item.strip().upper() for item in options.only.split(",") if item.strip()]
    unknown = sorted(set(options.only) - set(MODULES))
    if unknown or not options.only:
        parser.error(f"--only takes some of {','.join(MODULES)}; unknown: {unknown}")
    return options


def modules_for(ids: Sequence[str]) -> list[str]:
    """The modules that measure ``ids``, each once, in MODULES' order."""
    wanted = {MODULES[item] for item in ids}
    return [module for module in dict.fromkeys(MODULES.values()) if module in wanted]


def format_table(results: list[dict[str, Any]]) -> str:
    """The results as aligned text: ours, each baseline, and ours over it."""
    header = ("id", "metric", "unit", "ours", "baselines (ours/baseline)", "met")

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3g}"

    rows = [header]
    for row in results:
        ours = row["ours"]
        baselines = ", ".join(
            f"{name} {number(value)}"
            + (f" ({ours / value:.2f}x)" if ours is not None and value else "")
            for name, value in row["peers"].items()
        )
        rows.append(
            (
                row["id"],
                row["metric"],
                row["unit"],
                number(ours),
                baselines,
                "yes" if row["met"] else "NO",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(line.rstrip() for line in lines)


def format_markdown(results: list[dict[str, Any]]) -> str:
    """The results as the Markdown table docs/performance.md shows."""
    lines = [
        "| id | metric | unit | ours | baselines (ours/baseline) | target | met |",
        "|---|---|---|---:|---|---|---|",
    ]

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3g}"

    for row in results:
        ours = row["ours"]
        baselines = "<br>".join(
            f"{name}: {number(value)}"
            + (f" ({ours / value:.2f}x)" if ours is not None and value else "")
            for name, value in row["peers"].items()
        )
        cells = (
            row["id"],
            row["metric"],
            row["unit"],
            number(ours),
            baselines or "-",
            row["target"],
            "yes" if row["met"] else "**no**",
        )
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        print("needs two CPUs: what is measured on one, the load generator on the other")
        return 1
    # Before any thread exists, so every thread of this process stays on the client CPU.
    pin_to_client_cpu()
    raise_fd_limit(OPEN_FILES)

    started = time.monotonic()
    results: list[dict[str, Any]] = []
    raw_modules: dict[str, Any] = {}
    cdfs: dict[str, dict[str, list[float]]] = {}
    for name in modules_for(options.only):
        module = importlib.import_module(name)
        module_started = time.monotonic()
        print(f"== {name} ({options.profile}{', smoke' if options.smoke else ''})", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
            outcome: Outcome = module.run(
                options.profile, smoke=options.smoke, scratch=Path(scratch)
            )
        results.extend(row for row in outcome.results if row["id"] in options.only)
        raw_modules[name] = {
            **outcome.raw,
            "duration_seconds": round(time.monotonic() - module_started, 1),
        }
        cdfs.update(outcome.cdfs)

    report = {
        "machine": machine(PACKAGES),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "profile": options.profile,
        "results": results,
    }
    output: Path = options.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    raw_path = output.with_name(f"{output.stem}-raw.json")
    raw = {
        **report,
        "smoke": options.smoke,
        "only": options.only,
        "duration_seconds": round(time.monotonic() - started, 1),
        "modules": raw_modules,
        "cdfs": cdfs,
    }
    raw_path.write_text(json.dumps(raw) + "\n")
    output.with_suffix(".md").write_text(format_markdown(results))
    connection_sessions = raw_modules.get("bench.connections", {}).get("sessions", [])
    plots = render_all(cdfs, connection_sessions, output.with_name(f"{output.stem}-plots"))
    print(format_table(results))
    print(f"written to {output} (every sample: {raw_path}; {len(plots)} plots)")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())

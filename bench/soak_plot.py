"""Draws bench/soak.py's JSON as a PNG: RSS, open file descriptors and (pyserver) living Trio
tasks against time, one line per server. Needs matplotlib (not a project dependency: any
Python with it will do, e.g. ``python -m venv /tmp/plot && /tmp/plot/bin/pip install
matplotlib``).

    python bench/soak_plot.py soak.json soak.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(source: Path, target: Path) -> None:
    report = json.loads(source.read_text())
    opts = report["options"]
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for run in report["runs"]:
        t = [s["t"] for s in run["samples"]]
        axes[0].plot(t, [s["rss_kib"] / 1024 for s in run["samples"]], label=run["server"])
        axes[1].plot(t, [s["fds"] for s in run["samples"]], label=run["server"])
        if run["server"] == "pyserver" and run["probe"]:
            axes[2].plot(
                [p["t"] for p in run["probe"]],
                [p["tasks"] for p in run["probe"]],
                label="pyserver (Trio tasks)",
            )
    axes[0].set_ylabel("RSS (MiB)")
    axes[1].set_ylabel("open fds")
    axes[2].set_ylabel("living tasks")
    axes[2].set_xlabel("seconds")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right")
    axes[0].set_title(
        f"soak: {opts['connections']} connections, {opts['duration']:g} s, churn 10%/min "
        f"(half RST), room broadcast {opts['rate']:g}/s,"
        f"\n an ack per client every ~{opts['ack_ms']} ms",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(target, dpi=100)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

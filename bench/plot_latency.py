#!/usr/bin/env python3
"""Draws the command round trip against telemetry load from the points.csv that
bench/latency_vs_telemetry.sh writes: p50, p90 and p99 (log scale) against the telemetry
the server accepted per second, with the issue's bars as dashed lines.

    python3 bench/plot_latency.py POINTS.csv OUT.png [N]

Needs matplotlib (pip install matplotlib).
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    points, out = sys.argv[1], sys.argv[2]
    n = sys.argv[3] if len(sys.argv) > 3 else "?"
    with open(points, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("p50_ms")]
    if not rows:
        print(f"{points}: no points with command round trips", file=sys.stderr)
        return 1
    rows.sort(key=lambda r: float(r["telemetry_accepted_per_s"]))
    x = [float(r["telemetry_accepted_per_s"]) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for key, label, style in (
        ("p50_ms", "p50", "o-"),
        ("p90_ms", "p90", "s-"),
        ("p99_ms", "p99", "^-"),
    ):
        ax.plot(x, [float(r[key]) for r in rows], style, label=label)
    ax.axhline(5, color="grey", linestyle=":", linewidth=1)
    ax.axhline(20, color="grey", linestyle="--", linewidth=1)
    ax.axhline(100, color="grey", linestyle="-.", linewidth=1)
    ax.text(x[-1], 5, " idle p50 bar (5 ms)", va="bottom", ha="right", fontsize=8)
    ax.text(x[-1], 20, " idle p99 bar (20 ms)", va="bottom", ha="right", fontsize=8)
    ax.text(x[-1], 100, " loaded p99 bar (100 ms)", va="bottom", ha="right", fontsize=8)
    for r, xi in zip(rows, x):
        ax.annotate(
            f"{float(r['server_cpu_pct']):.0f} % CPU",
            (xi, float(r["p99_ms"])),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=7,
        )
    ax.set_yscale("log")
    ax.set_xlabel("signed telemetry samples accepted per second (all agents)")
    ax.set_ylabel("command round trip, ms (API request to `completed` seen)")
    ax.set_title(f"Tether: command round trip vs telemetry load ({n} agents, 2 cores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

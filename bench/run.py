"""SmallShardz benchmarks: `uv run python bench/run.py [WHICH]` (`--help` lists them).

Every figure is printed next to a floor measured in the same run on the same machine, and
as a ratio; the last lines are a markdown table for the README."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row, machine_note, markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "which",
        nargs="?",
        default="all",
        choices=[
            "auth",
            "events",
            "provisioning",
            "billing",
            "storage",
            "terminal",
            "moves",
            "dumps",
            "all",
        ],
    )
    args = parser.parse_args()
    print(f"machine: {machine_note()}", flush=True)
    if os.getloadavg()[0] > 0.7:
        print("WARNING: the machine is busy (another test run?); ratios are noisy", flush=True)
    rows: list[Row] = []
    if args.which in ("auth", "all"):
        import auth_bench

        rows += auth_bench.run()
    if args.which in ("events", "all"):
        import events_bench

        rows += events_bench.run()
    if args.which in ("provisioning", "all"):
        import provisioning_bench

        rows += provisioning_bench.run()
    if args.which in ("billing", "all"):
        import billing_bench

        rows += billing_bench.run()
    if args.which in ("storage", "all"):
        import storage_bench

        rows += storage_bench.run()
    if args.which in ("terminal", "all"):
        import terminal_bench

        rows += terminal_bench.run()
    if args.which in ("moves", "all"):
        import moves_bench

        rows += moves_bench.run()
    if args.which in ("dumps", "all"):
        import dumps_bench

        rows += dumps_bench.run()
    print(f"\nmachine after: {machine_note()}")
    print("\n" + markdown(rows))


if __name__ == "__main__":
    main()

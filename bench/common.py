"""Small shared helpers: results, percentiles, tables."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One line of the final README table."""

    figure: str
    ours: float
    floor: float
    unit: str
    goal: str
    higher_is_better: bool = True

    @property
    def ratio(self) -> float:
        if self.higher_is_better:
            return self.ours / self.floor if self.floor else float("nan")
        return self.floor / self.ours if self.ours else float("nan")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(p * 10) - 1]


def fmt(value: float, unit: str) -> str:
    if unit in {"req/s", "events/s"}:
        return f"{value:,.0f} {unit}"
    return f"{value:.2f} {unit}"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n== {title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))


def markdown(rows: list[Row]) -> str:
    out = [
        "| figure | ours | floor | ratio | goal |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}" + ("" if r.higher_is_better else " (floor/ours)")
        out.append(
            f"| {r.figure} | {fmt(r.ours, r.unit)} | {fmt(r.floor, r.unit)} | {ratio} | {r.goal} |"
        )
    return "\n".join(out)


def machine_note() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"

"""Receive throughput of two checkouts of realtime_sync, same run, alternating, medians.

    git worktree add /tmp/prev 151dc9a          # the tree to compare against
    python benchmarks/bench_trees.py /tmp/prev [--runs 3] [--core] [--scale 0.5]

Each run is a fresh interpreter (``bench_receive.py --json``) with its own benchmark server:
the plain blaster of ``benchmarks/_servers.py``, which writes pre-built frames as fast as
the socket takes them. Runs alternate between this tree and the other one; every run
measures the bare ``WebSocketApp`` loop and the openai SDK too, so each tree's ratios come
from the same interpreter and minute as its own figure. Reported: per tree and event kind,
the median events/s and the medians of the per-run ratios to the bare loop and to the SDK,
then this tree's median over the other's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import bench_receive  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("other", type=Path, help="the other checkout (its root directory)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--core", action="store_true", help="block orjson and wsaccel")
    parser.add_argument("--scale", type=float, default=0.5, help="multiply the event counts")
    args = parser.parse_args()
    trees = {"this": ROOT, "other": args.other.resolve()}
    rate: Dict[str, Dict[str, List[float]]] = {t: {} for t in trees}
    vs_bare: Dict[str, Dict[str, List[float]]] = {t: {} for t in trees}
    vs_sdk: Dict[str, Dict[str, List[float]]] = {t: {} for t in trees}
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    for run in range(args.runs):
        order = list(trees.items()) if run % 2 == 0 else list(trees.items())[::-1]
        for name, path in order:
            res = bench_receive.run_isolated(rounds=1, core=args.core, tree=path,
                                             scale=args.scale)
            for kind, per in res.items():
                rs_, bare, sdk = (statistics.median(per[c])
                                  for c in ("realtime_sync", "bare", "sdk"))
                rate[name].setdefault(kind, []).append(rs_)
                vs_bare[name].setdefault(kind, []).append(rs_ / bare)
                vs_sdk[name].setdefault(kind, []).append(rs_ / sdk)
                print(f"run {run + 1} {name:5s} {kind:5s} {rs_:10,.0f}/s  {rs_ / bare:.2f}x bare"
                      f"  {rs_ / sdk:.2f}x sdk  (load {os.getloadavg()[0]:.2f})", flush=True)
    print(f"\n{'core install' if args.core else 'as installed'}; medians of {args.runs} runs")
    for kind in rate["this"]:
        for name in trees:
            print(f"{kind:5s} {name:5s} {statistics.median(rate[name][kind]):10,.0f}/s  "
                  f"{statistics.median(vs_bare[name][kind]):.2f}x bare  "
                  f"{statistics.median(vs_sdk[name][kind]):.2f}x sdk")
        gain = statistics.median(rate["this"][kind]) / statistics.median(rate["other"][kind])
        print(f"{kind:5s} this / other = {gain:.2f}x")


if __name__ == "__main__":
    main()

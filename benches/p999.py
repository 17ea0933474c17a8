#!/usr/bin/env python3
"""p99.9 latency per chain from a peer-benchmark run directory (benches/pair.sh).

Reads raw/wrk-t{threads}-{chain}-c{conns}-r{rep}.txt, whose last line benches/p999.lua added
("p99.9 latency us: N"), and prints, per thread variant and connection count, each chain's
median p99.9 and the median of its per-rep ratios to HAProxy's, [min-max] the spread —
the way the harness reports p99.
"""
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

NAME = re.compile(r"wrk-t(\d+)-(\w+)-c(\d+)-r(\d+)\.txt$")
LINE = re.compile(r"^p99\.9 latency us: (\d+)$", re.M)


def main(run_dir: Path) -> int:
    p999 = defaultdict(dict)  # (threads, conns) -> {(chain, rep): us}
    for f in sorted((run_dir / "raw").glob("wrk-*.txt")):
        name, found = NAME.search(f.name), LINE.search(f.read_text(errors="replace"))
        if name and found:
            t, chain, c, rep = name.groups()
            p999[(int(t), int(c))][(chain, int(rep))] = int(found.group(1))
    if not p999:
        print(f"no p99.9 lines in {run_dir}/raw (was wrk run through benches/pair.sh?)")
        return 1
    print("p99.9 latency (wrk's histogram, same runs): median ms; x HAProxy = median of per-rep ratios [min-max]")
    print(f"{'threads':>7} {'conns':>5} {'chain':<8} {'p99.9 ms':>9}  x HAProxy")
    for (t, c), runs in sorted(p999.items()):
        chains = sorted({chain for chain, _ in runs}, key=lambda ch: (ch != "direct", ch))
        for chain in chains:
            reps = sorted(rep for ch, rep in runs if ch == chain)
            values = [runs[(chain, rep)] for rep in reps]
            ratios = [runs[(chain, rep)] / runs[("haproxy", rep)]
                      for rep in reps if runs.get(("haproxy", rep))]
            spread = ""
            if chain not in ("direct", "haproxy") and ratios:
                spread = f"x{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
            print(f"{t:>7} {c:>5} {chain:<8} {statistics.median(values) / 1000:>9.2f}  {spread}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))

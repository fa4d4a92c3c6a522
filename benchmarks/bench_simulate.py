"""Benchmark of the world simulator against named peers in the same run.

Peers: the same simulator at workers=1 vs workers=2 (parallel speed-up) and at n vs 4n customers with the
same shard size (memory must stay flat: it is bounded by the shard, not the population).

Each configuration runs in a fresh subprocess so peak RSS (max of the process and its worker children,
``resource.getrusage``) is measured per configuration.

    .venv/bin/python benchmarks/bench_simulate.py                 # n=50k, 24 months, shards of 25k
    .venv/bin/python benchmarks/bench_simulate.py --preset bench  # 1M users x 24 months (about 5 min / 2 cores)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_one(n: int, months: int, shard_size: int, workers: int, out: Path) -> dict:
    from cardlab.config import PresetSize, SimulateParams
    from cardlab.world.simulate import simulate

    presets = {
        "ci": PresetSize(n_customers=20_000),
        "dev": PresetSize(n_customers=200_000),
        "bench": PresetSize(n_customers=n, months=months, shard_size=shard_size),
    }
    params = SimulateParams(preset="bench", presets=presets)
    t0 = time.perf_counter()
    manifest = simulate(params, out, workers=workers, progress=False)
    wall = time.perf_counter() - t0
    rows = sum(t["rows"] for t in manifest["tables"].values())
    kib = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    return {
        "n": n,
        "months": months,
        "shard_size": shard_size,
        "workers": workers,
        "wall_s": round(wall, 2),
        "rows": rows,
        "rows_per_s": round(rows / wall),
        "peak_rss_mib": round(kib / 1024, 1),
        "statements": manifest["tables"]["raw/statements"]["rows"],
    }


def spawn(n: int, months: int, shard_size: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            str(n),
            str(months),
            str(shard_size),
            str(workers),
            str(Path(tmp) / "world"),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=["small", "bench"], default="small")
    ap.add_argument("--n", type=int, default=None, help="customers of the base run (default 50k / 1M)")
    ap.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        n, months, shard, workers, out = args.one
        print(json.dumps(run_one(int(n), int(months), int(shard), int(workers), Path(out))))
        return
    if args.preset == "bench":
        n, months, shard = args.n or 1_000_000, 24, 50_000
        configs = [(n // 4, 1), (n // 4, 2), (n, 2)]  # 1M at workers=1 alone would take ~10 min
    else:
        n, months, shard = args.n or 50_000, 24, 12_500
        configs = [(n, 1), (n, 2), (4 * n, 2)]
    results = []
    for nn, w in configs:
        r = spawn(nn, months, shard, w)
        results.append(r)
        print(
            f"n={r['n']:>9,} workers={w} wall={r['wall_s']:7.1f}s rows={r['rows']:>11,} "
            f"rows/s={r['rows_per_s']:>9,} peak_rss={r['peak_rss_mib']:7.1f} MiB",
            flush=True,
        )
    a, b, c = results
    print(f"speed-up workers 2 vs 1 (n={a['n']:,}): {a['wall_s'] / b['wall_s']:.2f}x")
    print(
        f"time ratio {c['n'] // b['n']}x users: {c['wall_s'] / b['wall_s']:.2f}x "
        f"(linear = {c['n'] / b['n']:.0f}x)"
    )
    print(
        f"peak memory ratio {c['n'] // b['n']}x users: {c['peak_rss_mib'] / b['peak_rss_mib']:.2f}x (flat = 1.0)"
    )


if __name__ == "__main__":
    main()

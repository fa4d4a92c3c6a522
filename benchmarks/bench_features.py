"""Benchmark: cardlab's polars features stage vs the pandas peer (benchmarks/bench_features_pandas.py).

Each side runs in its own subprocess on the same raw world; we report wall time, CPU time (user + sys, all
threads; steadier than wall time on a shared machine) and peak resident memory (``ru_maxrss`` of the child).
Two comparisons:

* ``subset``: both compute the same feature subset for the same churn snapshot grid (the like-for-like number);
* ``full``: the complete ``build_features`` (three tasks, ~250 features, guards, Parquet + dictionary) vs the
  pandas subset - a conservative ratio, the polars side does far more work.

Usage::

    python benchmarks/bench_features.py --raw /tmp/world/raw            # an existing world
    python benchmarks/bench_features.py --preset ci --workdir /tmp/bench  # simulate it first

Results go in the README, not in timed tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

POLARS_SUBSET = """
import sys, json
from dataclasses import replace
from pathlib import Path
import polars as pl
from cardlab.config import FeaturesParams
from cardlab.features.io import load_tables, read_calendar
from cardlab.features.snapshots import churn_snapshots
from cardlab.features.families import orders_family, sessions_family, statements_family
from cardlab.features.windows import window_sums, col, safe_div
raw, out = Path(sys.argv[1]), Path(sys.argv[2])
p = FeaturesParams()
W = [1, 3, 6, 12]
tables = load_tables(raw)
cal = read_calendar(raw, tables)
grid = churn_snapshots(tables["cards"], tables["statements"], tables["retention_offers"], cal, p).select(
    "card_id", "customer_id", pl.col("t").cast(pl.Int32), "snapshot_date").collect()
who = grid.select("customer_id").unique().lazy()
ev = lambda n: tables[n].join(who, on="customer_id", how="semi")
# like the peer, aggregate only the base columns the subset uses (projection pushdown prunes the rest)
only = lambda fam, *b: replace(fam, base=tuple(c for c in fam.base if c in b), recency=tuple(c for c in fam.recency if c in b))
o = window_sums(only(orders_family(ev("orders"), cal, []), "orders", "gmv", "n_returned", "n_bnpl", "active"), grid.lazy(), W)
s = window_sums(only(sessions_family(ev("sessions_monthly"), cal), "total"), grid.lazy(), W)
a = window_sums(only(statements_family(tables["statements"], cal, []), "util", "purch", "dpd_pos", "payments", "opening"), grid.lazy(), W)
ex = []
for w in W:
    n = col("ord", "orders", w)
    ex += [n.alias(f"ord_n_{w}m"), safe_div(col("ord", "gmv", w), pl.col(f"ord__n__{w}")).alias(f"ord_gmv_avg_month_{w}m"),
           safe_div(col("ord", "gmv", w), n).alias(f"ord_ticket_{w}m"),
           safe_div(col("ord", "n_returned", w), n).alias(f"ord_return_rate_{w}m"),
           safe_div(col("ord", "n_bnpl", w), n).alias(f"ord_bnpl_share_{w}m"),
           safe_div(col("ses", "total", w), pl.col(f"ses__n__{w}")).alias(f"ses_per_month_{w}m"),
           safe_div(col("acc", "util", w), pl.col(f"acc__n__{w}")).alias(f"acct_util_mean_{w}m"),
           safe_div(col("acc", "purch", w), pl.col(f"acc__n__{w}")).alias(f"acct_spend_{w}m"),
           col("acc", "dpd_pos", w).alias(f"acct_dpd_months_{w}m"),
           safe_div(col("acc", "payments", w), col("acc", "opening", w)).alias(f"acct_pay_ratio_{w}m")]
ex += [(pl.col("t") - pl.col("ord__lastpos__active")).alias("ord_months_since_last"),
       (pl.col("t") - pl.col("acc__lastpos__dpd_pos")).alias("acct_months_since_dpd")]
frame = (grid.lazy().join(o, on=["customer_id", "t"], how="left").join(s, on=["customer_id", "t"], how="left")
         .join(a, on=["card_id", "t"], how="left").select("card_id", "customer_id", "t", "snapshot_date", *ex)
         .sort("card_id", "t").collect())
frame.write_parquet(out)
print(json.dumps({"rows": frame.height}))
"""

POLARS_FULL = """
import sys, json
from pathlib import Path
from cardlab.config import FeaturesParams
from cardlab.features.build import build_features
print(json.dumps(build_features(FeaturesParams(), Path(sys.argv[1]), Path(sys.argv[2]), progress=False)))
"""

CHILD = """
import resource, sys, time, runpy
t0 = time.perf_counter()
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print('BENCH', wall, ru.ru_maxrss, ru.ru_utime + ru.ru_stime, file=sys.stderr)
"""


def run_child(script: Path, args: list[str]) -> dict:
    """Run ``script args`` in a fresh interpreter; return wall seconds (inside the child) and peak RSS MiB."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(script), *args], capture_output=True, text=True)
    outer = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{proc.stderr[-4000:]}")
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("BENCH ")][-1]
    _, wall, rss_kib, cpu = line.split()
    return {
        "wall_s": round(float(wall), 3),
        "cpu_s": round(float(cpu), 3),
        "process_s": round(outer, 3),
        "peak_rss_mib": round(int(rss_kib) / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, help="existing DIR/raw")
    ap.add_argument("--preset", default="ci", help="simulate this preset when --raw is not given")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=1, help="runs per side; the best wall time is reported")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_features_"))
    work.mkdir(parents=True, exist_ok=True)
    raw = args.raw
    if raw is None:
        from cardlab.config import SimulateParams
        from cardlab.world.simulate import simulate

        simulate(SimulateParams(preset=args.preset), work / "world", workers=2, progress=False)
        raw = work / "world" / "raw"
    scripts = {}
    for name, code in (("polars_subset", POLARS_SUBSET), ("polars_full", POLARS_FULL)):
        path = work / f"{name}.py"
        path.write_text(code)
        scripts[name] = path
    runs = {
        "pandas_subset": (HERE / "bench_features_pandas.py", [str(raw), str(work / "pandas_subset.parquet")]),
        "polars_subset": (scripts["polars_subset"], [str(raw), str(work / "polars_subset.parquet")]),
        "polars_full": (scripts["polars_full"], [str(raw), str(work / "features_out")]),
    }
    results: dict[str, dict] = {}
    for name, (script, a) in runs.items():
        best = None
        for _ in range(args.repeat):
            r = run_child(script, a)
            best = r if best is None or r["wall_s"] < best["wall_s"] else best
        results[name] = best
        print(
            f"{name:14s} wall {best['wall_s']:8.2f} s   cpu {best['cpu_s']:8.2f} s   "
            f"peak RSS {best['peak_rss_mib']:8.1f} MiB",
            flush=True,
        )
    pd_ = results["pandas_subset"]
    summary = {
        "raw": str(raw),
        "results": results,
        "subset_speedup": round(pd_["wall_s"] / results["polars_subset"]["wall_s"], 2),
        "subset_cpu_ratio": round(pd_["cpu_s"] / results["polars_subset"]["cpu_s"], 2),
        "subset_memory_ratio": round(results["polars_subset"]["peak_rss_mib"] / pd_["peak_rss_mib"], 3),
        "full_speedup_vs_pandas_subset": round(pd_["wall_s"] / results["polars_full"]["wall_s"], 2),
        "full_cpu_ratio_vs_pandas_subset": round(pd_["cpu_s"] / results["polars_full"]["cpu_s"], 2),
        "full_memory_ratio_vs_pandas_subset": round(
            results["polars_full"]["peak_rss_mib"] / pd_["peak_rss_mib"], 3
        ),
    }
    print(json.dumps(summary, indent=2))
    (work / "bench_features.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()

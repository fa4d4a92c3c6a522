"""Benchmark: the features stage at 250k / 500k / 1M users, local vs Dask, and cardlab vs DuckDB.

For each size a world of N users x 24 months (shards of 50k, the ``bench`` preset's layout) is simulated,
then each side runs in its own process:

* ``local``: ``build_features`` in one process (peak RSS of that process);
* ``dask``: the same call with ``engine: dask`` against a LocalCluster of 2 workers x 1 thread started by
  the child; reports the client's peak RSS and each worker's (``ru_maxrss`` collected with
  ``client.run``), the mean compute time per partition (Dask task stream) and checks that the output is
  byte-identical to ``local``'s;
* ``polars_subset`` (cardlab's code) vs ``duckdb_subset`` (benchmarks/bench_features_duckdb.py): the same
  42-feature subset of bench_features.py; the two frames are compared on their common (card_id, t) rows
  (cardlab's churn grid drops charged-off and closing cards, the peers' grid keeps every open month).

Usage::

    python benchmarks/bench_scale.py --sizes 250000 500000 1000000 --workdir /tmp/bench_scale

Results go in the README and docs/scale.md, not in timed tests.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_features import POLARS_SUBSET  # noqa: E402

# peak RSS from the kernel's high-water mark of *this* process image (VmHWM is reset at exec; ru_maxrss is
# not, so a child forked from a large parent would report the parent's size)
CHILD = """
import sys, time, runpy, resource
t0 = time.perf_counter()
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
wall = time.perf_counter() - t0
hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]
ru = resource.getrusage(resource.RUSAGE_SELF)
print('BENCH', wall, hwm, ru.ru_utime + ru.ru_stime, file=sys.stderr)
"""


def run_child(script: Path, args: list[str]) -> dict:
    """``script args`` in a fresh interpreter: wall and CPU seconds, peak RSS (MiB) of that process."""
    proc = subprocess.run([sys.executable, "-c", CHILD, str(script), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{proc.stderr[-4000:]}")
    _, wall, hwm_kib, cpu = [ln for ln in proc.stderr.splitlines() if ln.startswith("BENCH ")][-1].split()
    return {
        "wall_s": round(float(wall), 2),
        "cpu_s": round(float(cpu), 2),
        "peak_rss_mib": round(int(hwm_kib) / 1024, 1),
    }


SIMULATE = """
import sys
from pathlib import Path
from cardlab.config import PresetSize, SimulateParams
from cardlab.world.simulate import simulate
if __name__ == "__main__":
    n = int(sys.argv[2])
    size = PresetSize(n_customers=n, months=24, shard_size=50_000)
    simulate(SimulateParams(preset="bench", presets={"bench": size}), Path(sys.argv[1]), workers=2, progress=False)
"""

LOCAL = """
import sys, json
from pathlib import Path
from cardlab.config import FeaturesParams
from cardlab.features.build import build_features
print(json.dumps(build_features(FeaturesParams(), Path(sys.argv[1]), Path(sys.argv[2]), progress=False)))
"""

DASK = """
import sys, json
from pathlib import Path
from distributed import Client, LocalCluster, get_task_stream
from cardlab.config import EngineParams, FeaturesParams
from cardlab.features.build import build_features

def rss():
    return [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0] / 1024

if __name__ == "__main__":
    raw, out, report = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    env = {"POLARS_MAX_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="8GiB", dashboard_address=None,
                      host="127.0.0.1", env=env) as cluster, Client(cluster) as client:
        engine = EngineParams(kind="dask", scheduler=cluster.scheduler_address)
        with get_task_stream(client) as ts:
            summary = build_features(FeaturesParams(), raw, out, progress=False, engine=engine)
        workers = client.run(rss)
        per = {}
        for rec in ts.data:
            name = rec["key"].rsplit("-", 2)[0] if isinstance(rec["key"], str) else str(rec["key"])
            secs = sum(s["stop"] - s["start"] for s in rec["startstops"] if s["action"] == "compute")
            per.setdefault(name, []).append(secs)
    report.write_text(json.dumps({
        "worker_peak_rss_mib": sorted(round(v, 1) for v in workers.values()),
        "per_partition_s": {k: round(sum(v) / len(v), 2) for k, v in per.items()},
        "partitions": {k: len(v) for k, v in per.items()},
        "summary": summary,
    }))
"""


def compare_subsets(polars_file: Path, duckdb_file: Path) -> dict:
    """cardlab's subset vs DuckDB's on their common rows: the largest absolute difference per column."""
    import numpy as np
    import polars as pl

    a = pl.read_parquet(polars_file)
    b = pl.read_parquet(duckdb_file).with_columns(pl.col("t").cast(pl.Int32))
    both = a.join(b, on=["card_id", "t"], how="inner", suffix="__duckdb")
    worst, cols = 0.0, 0
    for c in a.columns:
        if c in ("card_id", "customer_id", "t", "snapshot_date") or f"{c}__duckdb" not in both.columns:
            continue
        x = both[c].cast(pl.Float64).to_numpy()
        y = both[f"{c}__duckdb"].cast(pl.Float64).to_numpy()
        nan_x, nan_y = np.isnan(x), np.isnan(y)
        if (nan_x != nan_y).any():
            raise AssertionError(f"{c}: missing in one frame, present in the other")
        d = float(np.max(np.abs(x[~nan_x] - y[~nan_x]) / np.maximum(1.0, np.abs(y[~nan_x])), initial=0.0))
        worst, cols = max(worst, d), cols + 1
    return {
        "common_rows": both.height,
        "polars_rows": a.height,
        "duckdb_rows": b.height,
        "columns": cols,
        "max_rel_diff": worst,
    }


def one_size(n: int, work: Path, keep: bool) -> dict:
    from cardlab.artifacts import dir_digest

    world = work / f"world_{n}"
    scripts = {}
    for name, code in (
        ("local", LOCAL),
        ("dask", DASK),
        ("polars_subset", POLARS_SUBSET),
        ("simulate", SIMULATE),
    ):
        scripts[name] = work / f"{name}.py"
        scripts[name].write_text(code)
    if not (world / "manifest.json").exists():
        run_child(scripts["simulate"], [str(world), str(n)])
    raw = world / "raw"
    res = {"users": n}
    res["local"] = run_child(scripts["local"], [str(raw), str(work / f"out_local_{n}")])
    res["dask"] = run_child(scripts["dask"], [str(raw), str(work / f"out_dask_{n}"), str(work / "dask.json")])
    res["dask"].update(json.loads((work / "dask.json").read_text()))
    res["dask"]["byte_identical"] = dir_digest(work / f"out_local_{n}") == dir_digest(work / f"out_dask_{n}")
    res["polars_subset"] = run_child(
        scripts["polars_subset"], [str(raw), str(work / "polars_subset.parquet")]
    )
    res["duckdb_subset"] = run_child(
        HERE / "bench_features_duckdb.py", [str(raw), str(work / "duckdb_subset.parquet")]
    )
    res["subset_compare"] = compare_subsets(work / "polars_subset.parquet", work / "duckdb_subset.parquet")
    res["polars_over_duckdb_wall"] = round(res["polars_subset"]["wall_s"] / res["duckdb_subset"]["wall_s"], 2)
    res["polars_over_duckdb_rss"] = round(
        res["polars_subset"]["peak_rss_mib"] / res["duckdb_subset"]["peak_rss_mib"], 2
    )
    if not keep:
        for p in (world, work / f"out_local_{n}", work / f"out_dask_{n}"):
            shutil.rmtree(p, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[250_000, 500_000, 1_000_000])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_scale"))
    ap.add_argument("--keep", action="store_true", help="keep the worlds and outputs")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    out = []
    for n in args.sizes:
        r = one_size(n, args.workdir, args.keep)
        out.append(r)
        d = r["dask"]
        print(
            f"{n:>9,} users  local {r['local']['wall_s']:7.1f} s {r['local']['peak_rss_mib']:7.0f} MiB | dask "
            f"{d['wall_s']:7.1f} s client {d['peak_rss_mib']:6.0f} MiB workers {d['worker_peak_rss_mib']} MiB "
            f"identical {d['byte_identical']} | subset polars {r['polars_subset']['wall_s']:.1f} s "
            f"{r['polars_subset']['peak_rss_mib']:.0f} MiB, duckdb {r['duckdb_subset']['wall_s']:.1f} s "
            f"{r['duckdb_subset']['peak_rss_mib']:.0f} MiB (max rel diff {r['subset_compare']['max_rel_diff']:.1e})",
            flush=True,
        )
        (args.workdir / "bench_scale.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

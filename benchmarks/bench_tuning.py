"""Benchmark: tuning throughput (trials per minute) with 1 vs 2 Dask workers on PostgreSQL RDB storage.

Issue 23's missing number. One training problem, one batched Optuna study (``tune.parallel_trials`` = 2, the
same seed and trial budget) run three ways, each in a fresh interpreter and on a fresh study name in the
same PostgreSQL database:

* ``local``: the local engine (batches run in-process, one trial after the other);
* ``dask_1``: ``engine: dask``, a LocalCluster of 1 worker x 1 thread;
* ``dask_2``: ``engine: dask``, a LocalCluster of 2 workers x 1 thread.

Each goes through ``cardlab.modeling.tuning.run_study`` as ``cardlab tune`` does (study locks, batch-
synchronous TPE of ``cardlab.scale.trials``, MLflow runs to a SQLite store in the work folder, the
LocalCluster started and stopped inside the call). Every XGBoost fit uses nthread=1 with a fixed budget of
``--rounds`` boosting rounds (early stopping off unless ``--early-stopping`` is given; the median pruner of
the workflow stays on). The problem is synthetic binary data (numpy, seeded; ``--rows`` x ``--features``,
80/20 train/valid) or, with ``--features-root``, a task's frame of a features folder (its train/valid split
and monotone constraints, every labelled row, no shadow screen).

Reported per run: wall seconds of the ``run_study`` call, finished (and pruned) trials, **trials per
minute**, the start-up before the first trial (cluster start, data written for the workers), steady
trials per minute (first trial start to last trial end), mean trial seconds, and the child process's wall,
CPU and peak RSS; then the speed-up of 2 workers over 1. The batched study promises the same trials for a
given ``parallel_trials`` on any number of workers: the script checks that ``dask_1`` and ``dask_2`` (and
``local``) finished the same trials with the same best params and value, says so, and exits 1 when not.

PostgreSQL (``cardlab.scale.services.PostgresServer``, Debian's ``postgresql``) is started in a temporary
folder on a free port and stopped and removed at the end, also on error.

Usage::

    python benchmarks/bench_tuning.py --trials 16 --rows 100000 --features 60 --rounds 200 --out /tmp/bench_tuning.json

Results go in the README and docs/scale.md, not in timed tests.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Only the standard library at module level: Dask's LocalCluster spawns its workers, which import this
# ``__main__`` again; what ``cardlab tune``'s workers import (the trial code) they import themselves.
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# (label, engine kind, Dask workers): the three runs, in this order
RUNS: tuple[tuple[str, str, int], ...] = (("local", "local", 1), ("dask_1", "dask", 1), ("dask_2", "dask", 2))
PARALLEL_TRIALS = 2
EXPERIMENT = "cardlab-bench-tuning"
PORTS = range(17900, 18000)  # the scale tests use 17600-17800, `make services` 17432


# ---------------------------------------------------------------------------------------------------------
# the child: one study, timed, in a fresh interpreter
# ---------------------------------------------------------------------------------------------------------
def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the study ``spec`` describes; its timings and finished trials (in (batch, slot) order)."""
    import xgboost

    from cardlab.config import EngineParams, TuneParams
    from cardlab.modeling.tuning import run_study
    from cardlab.modeling.xgb import base_params
    from cardlab.scale import engine as scale_engine

    tune = TuneParams(
        n_trials=spec["trials"],
        num_boost_round=spec["rounds"],
        early_stopping_rounds=spec["early_stopping"],
        nthread=1,
        storage=spec["storage"],
        parallel_trials=PARALLEL_TRIALS,
        seed=spec["seed"],
    )
    engine = EngineParams(
        kind=spec["engine"],
        local_workers=spec["workers"],
        threads_per_worker=1,
        memory_per_worker=spec["memory_per_worker"],
    )
    dtrain = xgboost.DMatrix(spec["train"])
    dvalid = xgboost.DMatrix(spec["valid"])
    base = {**base_params(tune, eval_metric=spec["metric"]), **spec["fixed"]}
    scale_engine.configure(engine)
    started_at = datetime.datetime.now()  # Optuna stamps trials with naive local time too
    started = time.perf_counter()
    study = run_study(
        task=spec["task"],
        tune=tune,
        seed=spec["seed"],
        out_dir=Path(spec["out_dir"]),
        data_digest=spec["data_digest"],
        base=base,
        dtrain=dtrain,
        dvalid=dvalid,
        direction=spec["direction"],
        metric=spec["metric"],
        experiment_name=EXPERIMENT,
        identity={"bench_run": spec["label"], "nonce": spec["nonce"]},  # a fresh study name per run
    )
    wall = time.perf_counter() - started
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    finished.sort(key=lambda t: (t.user_attrs["batch"], t.user_attrs["slot"]))
    starts = [(t.datetime_start - started_at).total_seconds() for t in finished if t.datetime_start]
    ends = [(t.datetime_complete - started_at).total_seconds() for t in finished if t.datetime_complete]
    durations = [t.duration.total_seconds() for t in finished if t.duration is not None]
    best = study.best_trial
    steady = max(ends) - min(starts) if starts and ends else float("nan")
    return {
        "study": study.study_name,
        "engine": spec["engine"],
        "workers": spec["workers"] if spec["engine"] == "dask" else 0,
        "wall_s": round(wall, 2),
        "trials": len(finished),
        "pruned": sum(t.state.name == "PRUNED" for t in finished),
        "failed": sum(t.state.name == "FAIL" for t in study.trials),
        "trials_per_min": round(len(finished) / wall * 60, 2),
        "startup_s": round(min(starts), 2) if starts else None,
        "steady_trials_per_min": round(len(finished) / steady * 60, 2) if steady > 0 else None,
        "mean_trial_s": round(statistics.mean(durations), 3) if durations else None,
        "best_value": best.value,
        "best_params": best.params,
        "best_batch_slot": [best.user_attrs["batch"], best.user_attrs["slot"]],
        "finished": [[t.state.name, t.params, t.value] for t in finished],
    }


def child_main(spec_file: Path) -> None:
    spec = json.loads(spec_file.read_text())
    Path(spec["result"]).write_text(json.dumps(run_one(spec)))


# ---------------------------------------------------------------------------------------------------------
# the parent: data, PostgreSQL, the three runs, the comparison
# ---------------------------------------------------------------------------------------------------------
def write_problem(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Write train/valid as XGBoost binary buffers; what the children need to know about the problem."""
    import hashlib

    if args.features_root is None:
        from bench_training import make_data

        dtrain, dvalid = make_data(args.rows, args.features, seed=args.seed)
        fixed: dict[str, Any] = {}
        task, metric = "synthetic", "auc"
        description = f"synthetic {args.rows:,} rows x {args.features} features (seed {args.seed})"
    else:
        from cardlab.modeling.workflow import load_task_data

        data = load_task_data(args.features_root, args.task)
        dtrain, dvalid = data.matrix("train"), data.matrix("valid")
        fixed = {"monotone_constraints": data.monotone}
        task, metric = args.task, "logloss" if args.task == "credit" else "auc"
        description = (
            f"{args.task} frame of {args.features_root}: {dtrain.num_row():,} train + {dvalid.num_row():,} "
            f"valid rows x {dtrain.num_col()} features"
        )
    files = {"train": work / "train.buffer", "valid": work / "valid.buffer"}
    dtrain.save_binary(str(files["train"]))
    dvalid.save_binary(str(files["valid"]))
    digest = hashlib.sha256(files["train"].read_bytes() + files["valid"].read_bytes()).hexdigest()
    return {
        "task": task,
        "metric": metric,
        "direction": "maximize" if metric == "auc" else "minimize",
        "fixed": fixed,
        "train": str(files["train"]),
        "valid": str(files["valid"]),
        "data_digest": digest[:16],
        "description": description,
        "train_rows": dtrain.num_row(),
        "valid_rows": dvalid.num_row(),
        "features": dtrain.num_col(),
    }


@contextlib.contextmanager
def postgres(work: Path) -> Iterator[str]:
    """A throwaway PostgreSQL with a database ``optuna``; yields its SQLAlchemy URL. Stopped and removed on
    exit, also on error."""
    from cardlab.scale.services import PostgresServer, port_free

    port = next((p for p in PORTS if port_free(p)), None)
    if port is None:
        raise RuntimeError(f"no free port for PostgreSQL in {PORTS.start}-{PORTS.stop - 1}")
    server = PostgresServer(work / "postgres", port)
    try:
        server.start()
        server.create_database("optuna")
        url = server.sqlalchemy_url("optuna")
        import optuna

        optuna.storages.RDBStorage(url).remove_session()  # Optuna's tables, created outside every timed run
        yield url
    finally:
        with contextlib.suppress(Exception):  # not started, or already down: nothing to stop
            server.stop("fast")
        server.remove()


def same_trials(left: dict[str, Any], right: dict[str, Any]) -> dict[str, bool]:
    return {
        "best_params": left["best_params"] == right["best_params"],
        "best_value": left["best_value"] == right["best_value"],
        "all_trials": left["finished"] == right["finished"],
    }


def ratio(numerator: dict[str, Any], denominator: dict[str, Any], key: str) -> float:
    """``numerator[key] / denominator[key]`` (NaN when either is missing or the denominator is 0)."""
    top, bottom = numerator.get(key), denominator.get(key)
    return round(top / bottom, 3) if top and bottom else float("nan")


def markdown_row(summary: dict[str, Any]) -> str:
    runs, args = summary["runs"], summary["args"]
    cmd = (
        f"`bench_tuning.py --trials {args['trials']} "
        + (
            f"--rows {args['rows']} --features {args['features']} "
            if args["features_root"] is None
            else f"--features-root {args['features_root']} --task {args['task']} "
        )
        + f"--rounds {args['rounds']}` (batched study, `parallel_trials` 2, PostgreSQL RDB storage, nthread 1)"
    )
    rates = ", ".join(
        f"{label} {runs[label]['trials_per_min']:.1f}/min ({runs[label]['wall_s']:.1f} s)"
        for label in ("local", "dask_1", "dask_2")
    )
    same = "yes" if summary["reproducible"] else "**NO**"
    return (
        f"| {cmd} | the same study on 1 Dask worker (LocalCluster 1 × 1 thread) and in-process (local engine) | "
        f"{summary['problem']['description']}, {runs['dask_2']['trials']} trials: {rates}; **2 workers vs 1: "
        f"{summary['speedup_2_over_1']:.2f}×** (steady {summary['steady_speedup_2_over_1']:.2f}×, start-up "
        f"{runs['dask_1']['startup_s']:.1f} / {runs['dask_2']['startup_s']:.1f} s); same trials and best "
        f"params on 1 and 2 workers: {same} ({datetime.date.today().isoformat()}) |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=16, help="tune.n_trials of each study")
    ap.add_argument("--rows", type=int, default=100_000, help="synthetic rows (train + valid)")
    ap.add_argument("--features", type=int, default=60, help="synthetic features")
    ap.add_argument(
        "--rounds", type=int, default=200, help="boosting rounds per trial (tune.num_boost_round)"
    )
    ap.add_argument(
        "--early-stopping", type=int, default=None, help="early-stopping rounds (default: off, = --rounds)"
    )
    ap.add_argument("--seed", type=int, default=7, help="the data's and the study's seed")
    ap.add_argument(
        "--features-root", type=Path, default=None, help="a features folder instead of synthetic data"
    )
    ap.add_argument("--task", choices=["credit", "churn"], default="credit", help="frame of --features-root")
    ap.add_argument("--memory-per-worker", default="2GiB", help="LocalCluster memory limit per worker")
    ap.add_argument("--workdir", type=Path, default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON summary here")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)  # one run (internal)
    args = ap.parse_args()
    if args.child is not None:
        child_main(args.child)
        return

    work = Path(tempfile.mkdtemp(prefix="bench_tuning-")) if args.workdir is None else args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    # MLflow runs go to a SQLite store in the work folder, never the repository's
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["CARDLAB_ROOT"] = str(work)
    try:
        summary = measure(args, work)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    if not summary["reproducible"]:
        sys.exit(1)


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from bench_scale import run_child
    from cardlab import tracking

    problem = write_problem(args, work)
    print(f"problem: {problem['description']}; {args.trials} trials, {args.rounds} rounds", flush=True)
    tracking.experiment(EXPERIMENT)  # the SQLite store's schema is created here, outside every timed run
    nonce = uuid.uuid4().hex[:12]
    runs: dict[str, dict[str, Any]] = {}
    with postgres(work) as url:
        for label, kind, workers in RUNS:
            spec = {
                **problem,
                "label": label,
                "engine": kind,
                "workers": workers,
                "storage": url,
                "trials": args.trials,
                "rounds": args.rounds,
                "early_stopping": args.early_stopping or args.rounds,
                "seed": args.seed,
                "memory_per_worker": args.memory_per_worker,
                "nonce": nonce,
                "out_dir": str(work / label),
                "result": str(work / f"{label}.json"),
            }
            spec_file = work / f"{label}.spec.json"
            spec_file.write_text(json.dumps(spec))
            process = run_child(Path(__file__).resolve(), ["--child", str(spec_file)])
            result = json.loads(Path(spec["result"]).read_text())
            result["process"] = process
            runs[label] = result
            print(
                f"{label:7s} {result['wall_s']:7.1f} s  {result['trials']:3d} trials ({result['pruned']} pruned, "
                f"{result['failed']} failed)  {result['trials_per_min']:6.1f} trials/min  start-up "
                f"{result['startup_s']} s  steady {result['steady_trials_per_min']} trials/min  mean trial "
                f"{result['mean_trial_s']} s  | process {process['wall_s']} s, CPU {process['cpu_s']} s, "
                f"peak {process['peak_rss_mib']} MiB",
                flush=True,
            )
    checks = {
        "dask_2_vs_dask_1": same_trials(runs["dask_2"], runs["dask_1"]),
        "dask_1_vs_local": same_trials(runs["dask_1"], runs["local"]),
    }
    reproducible = all(checks["dask_2_vs_dask_1"].values())
    summary = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "child"},
        "parallel_trials": PARALLEL_TRIALS,
        "cpus": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "problem": {k: problem[k] for k in ("description", "train_rows", "valid_rows", "features", "metric")},
        "runs": {label: {k: v for k, v in r.items() if k != "finished"} for label, r in runs.items()},
        "speedup_2_over_1": ratio(runs["dask_2"], runs["dask_1"], "trials_per_min"),
        "steady_speedup_2_over_1": ratio(runs["dask_2"], runs["dask_1"], "steady_trials_per_min"),
        "speedup_2_over_local": ratio(runs["dask_2"], runs["local"], "trials_per_min"),
        "checks": checks,
        "reproducible": reproducible,
    }
    print(json.dumps(summary, indent=2))
    if reproducible:
        print(
            "reproducible: dask_1 and dask_2 finished the same trials, best params and best value "
            f"{runs['dask_2']['best_value']!r}"
            + ("" if all(checks["dask_1_vs_local"].values()) else " (NOTE: local differs: see checks)")
        )
    else:
        print(
            f"NOT REPRODUCIBLE: dask_1 vs dask_2 {checks['dask_2_vs_dask_1']}: the batched study promises the "
            "same trials for a given parallel_trials on any number of workers (docs/scale.md)",
            file=sys.stderr,
        )
    print(markdown_row(summary))
    return summary


if __name__ == "__main__":
    main()

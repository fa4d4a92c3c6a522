"""`cardlab <verb>`: one verb per DVC stage.

Every verb reads params.yaml (``--params``), accepts ``--set section.key=value`` overrides and explicit
paths, so it runs the same inside DVC and by hand. Before any expensive work a verb checks that its output
place is writable and that the raw world it reads matches its manifest (:mod:`cardlab.integrity`).
Anticipated failures (:class:`cardlab.errors.CardlabError`, a full disk, a read-only place) stop the verb with
one line naming the path and what to do (exit code 2) and leave earlier outputs intact; SIGTERM and Ctrl-C
remove temporary outputs and exit 143/130; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import typer
from rich.console import Console

from cardlab import taskspec
from cardlab.config import load_params

app = typer.Typer(
    name="cardlab",
    help="cardlab: co-branded credit-card research lab on a synthetic world with a sealed oracle.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read")]
FeaturesOpt = Annotated[Path, typer.Option("--features", help="features root")]
ExperimentsOpt = Annotated[Path, typer.Option(help="experiments root")]
OracleOpt = Annotated[Path, typer.Option(help="oracle folder (evaluation only)")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a param, e.g. --set simulate.seed=11 (repeatable)"),
]


def _task(value: str) -> str:
    """A registered task's name (cardlab.taskspec.REGISTRY, read when the verb runs)."""
    if value not in taskspec.names():
        raise typer.BadParameter(f"unknown task {value!r}; choose one of {', '.join(taskspec.names())}")
    return value


TaskArg = Annotated[str, typer.Argument(help=f"task: one of {', '.join(taskspec.names())}", callback=_task)]


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _engine_and_tracking(p: Any, stage: str) -> None:
    """Before a verb that logs to MLflow does any work: its engine (params.engine) is this process's, and a
    tracking server that does not answer stops it now, not at log time."""
    from cardlab import tracking
    from cardlab.scale import engine

    engine.configure(p.engine)
    tracking.check_server(stage=f"`cardlab {stage}`")


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn anticipated failures into one red line and exit code 2; unanticipated ones keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cardlab.artifacts import ACCESS_ERRNOS, SPACE_ERRNOS, install_sigterm_handler
        from cardlab.errors import CardlabError, Terminated

        install_sigterm_handler()
        try:
            return fn(*args, **kwargs)
        except CardlabError as err:
            _fail(str(err))
        except OSError as err:
            where = err.filename or "an output file"
            if err.errno in SPACE_ERRNOS:
                _fail(
                    f"no space left on the device while writing {where}: free space there (or choose another "
                    "--out) and re-run; earlier outputs are intact, partial ones were removed"
                )
            if err.errno in ACCESS_ERRNOS and err.filename:
                _fail(f"{where}: {err.strerror}; fix its permissions or choose another place")
            raise
        except Terminated:
            _fail("terminated (SIGTERM): temporary outputs removed, earlier outputs intact", 143)
        except KeyboardInterrupt:
            _fail("interrupted: temporary outputs removed, earlier outputs intact", 130)

    return wrapper


def _writable(path: Path, kind: Literal["dir", "file"] = "dir") -> None:
    """Check an output place before expensive work (an unwritable --out fails in a second, not minutes)."""
    from cardlab.artifacts import check_writable

    check_writable(path, kind)


def _verified_raw(raw: Path, tables: tuple[str, ...] | None = None) -> None:
    """Verify ``raw`` (or the given tables of it) against its world's manifest and the table contract."""
    from cardlab.integrity import verify_raw

    verify_raw(raw, tables)


@app.command()
@friendly_errors
def simulate(
    preset: Annotated[str | None, typer.Option(help="world size preset: ci | dev | bench")] = None,
    seed: Annotated[int | None, typer.Option(help="master seed")] = None,
    workers: Annotated[int | None, typer.Option(help="parallel shard processes")] = None,
    out: Annotated[Path, typer.Option(help="output folder: raw/, oracle/, manifest.json")] = Path("data"),
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Generate the synthetic world: DIR/raw (observables), DIR/oracle (ground truth), DIR/manifest.json."""
    overrides = list(set_ or [])
    if preset is not None:
        overrides.append(f"simulate.preset={preset}")
    if seed is not None:
        overrides.append(f"simulate.seed={seed}")
    if workers is not None:
        overrides.append(f"simulate.workers={workers}")
    everything = load_params(params, overrides)
    p = everything.simulate
    from cardlab.world.simulate import simulate as run_simulation

    manifest = run_simulation(p, out, workers=p.workers, progress=True, engine=everything.engine)
    rows = manifest.get("tables", {})
    console.print(f"[green]world written[/] to {out} ({len(rows)} tables, preset {p.preset}, seed {p.seed})")


@app.command()
@friendly_errors
def features(
    raw: Annotated[Path, typer.Option(help="raw world folder (never the oracle)")] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="output folder: <task>/ datasets + dictionary")] = Path(
        "data/features"
    ),
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Build point-in-time snapshot datasets for every task from data/raw."""
    everything = load_params(params, set_)
    p = everything.features
    _writable(out)
    _verified_raw(raw)
    from cardlab.features.build import build_features

    summary = build_features(p, raw, out, progress=True, engine=everything.engine)
    for task, n in summary.get("rows", {}).items():
        console.print(f"[green]{task}[/]: {n:,} snapshot rows")


@app.command()
@friendly_errors
def tune(
    task: TaskArg,
    features_dir: FeaturesOpt = Path("data/features"),
    out: ExperimentsOpt = Path("experiments"),
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Optuna study for TASK (resumable by name); writes experiments/TASK/best_params.json."""
    p = load_params(params, set_)
    _writable(out / task / "best_params.json", "file")
    _engine_and_tracking(p, f"tune {task}")
    from cardlab.tasks import get_task

    get_task(task).tune(p, features_dir, out / task)


@app.command()
@friendly_errors
def train(
    task: TaskArg,
    features_dir: FeaturesOpt = Path("data/features"),
    out: ExperimentsOpt = Path("experiments"),
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Fit TASK's final model(s) with the tuned params; writes experiments/TASK/model/."""
    p = load_params(params, set_)
    _writable(out / task / "model")
    _engine_and_tracking(p, f"train {task}")
    from cardlab.tasks import get_task

    module = get_task(task)
    _verify_task_raw(module, features_dir)
    module.train(p, features_dir, out / task)


@app.command()
@friendly_errors
def evaluate(
    task: TaskArg,
    features_dir: FeaturesOpt = Path("data/features"),
    oracle: OracleOpt = Path("data/oracle"),
    out: ExperimentsOpt = Path("experiments"),
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Grade TASK against the oracle; writes metrics.json, predictions.parquet, plots; registers the model."""
    p = load_params(params, set_)
    _writable(out / task / "metrics.json", "file")
    _engine_and_tracking(p, f"evaluate {task}")
    from cardlab.tasks import get_task

    module = get_task(task)
    _verify_task_raw(module, features_dir)
    from cardlab.explain.run import contract_metrics

    # the explanation keys of the metrics contract: explain's code, handed to the task (tasks never import
    # explain, docs/architecture.md)
    metrics = module.evaluate(p, features_dir, oracle, out / task, contract=contract_metrics)
    # the task's headline metrics (cardlab.taskspec), not the first keys of an alphabetical list
    for k in taskspec.get(task).headline:
        v = metrics.get(k)
        console.print(f"  {k:<28} {v:.4f}" if isinstance(v, float) else f"  {k:<28} {v}")


@app.command()
@friendly_errors
def explain(
    task: TaskArg,
    features_dir: FeaturesOpt = Path("data/features"),
    oracle: Annotated[Path, typer.Option(help="oracle folder (true drivers, evaluation only)")] = Path(
        "data/oracle"
    ),
    out: ExperimentsOpt = Path("experiments"),
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """SHAP explanations, reason codes, faithfulness vs the true drivers, and the bank-facing report.html."""
    p = load_params(params, set_)
    _writable(out / task / "explain")
    from cardlab.explain.run import explain as run_explain

    metrics = run_explain(p, task, features_dir, oracle, out / task)
    console.print(f"[green]{task}[/] explained: report at {out / task / 'report.html'}")
    for k in ("shap_additivity_max_err", "shap_truth_spearman", "decoys_below_drivers"):
        if k in metrics:
            console.print(f"  {k:<28} {metrics[k]}")


@app.command()
@friendly_errors
def report(
    raw: Annotated[Path, typer.Option(help="raw world folder")] = Path("data/raw"),
    oracle: Annotated[
        Path, typer.Option(help="oracle folder (true campaign effects, evaluation only)")
    ] = Path("data/oracle"),
    out: Annotated[Path, typer.Option(help="output folder")] = Path("experiments/portfolio"),
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Portfolio operations: lifecycle KPIs, vintage and roll-rate curves, campaign evaluation, HTML report."""
    p = load_params(params, set_).report
    _writable(out)
    _verified_raw(raw)
    from cardlab.reports.portfolio import build_report

    headline = build_report(p, raw, oracle, out, progress=True)
    console.print(
        f"[green]portfolio report[/] written to {out / 'report.html'} ({len(headline)} headline KPIs)"
    )


@app.command()
@friendly_errors
def promote(task: TaskArg) -> None:
    """Move the 'champion' alias of cardlab-TASK to its current 'challenger' (never run in CI)."""
    from cardlab.tracking import promote as promote_alias

    name, version = promote_alias(task)
    console.print(f"[green]{name}[/] version {version} is now champion")


@app.command()
@friendly_errors
def materialize(
    raw: Annotated[Path, typer.Option(help="raw world folder (never the oracle)")] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="output folder of the online feature store")] = Path(
        "data/online"
    ),
    replay_month: Annotated[
        list[int] | None,
        typer.Option(
            "--replay-month",
            help="month index whose applications to keep for replay (repeatable; "
            "default: the credit and limit OOT months)",
        ),
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Online feature store for the decision service: every customer's feature row as of today (and the OOT
    applications' months, for replay), computed by the same code as `cardlab features`."""
    p = load_params(params, set_).features
    from cardlab.serve.store import materialize as run_materialize

    s = run_materialize(p, raw, out, replay_month)
    console.print(
        f"[green]feature store[/] {out}: {s['rows']:,} rows ({s['customers']:,} customers as of month "
        f"{s['today']}, replay months {s['replay_months']}), {s['columns']} columns, {s['bytes'] / 2**20:.1f} MiB"
    )


@app.command()
@friendly_errors
def serve(
    host: Annotated[
        str, typer.Option(help="bind address (loopback by default; a gateway fronts it)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 18000,
    credit: Annotated[str, typer.Option(help="cardlab-credit alias or version")] = "champion",
    limit: Annotated[str, typer.Option(help="cardlab-limit alias or version")] = "champion",
    store: Annotated[Path, typer.Option(help="feature store folder (cardlab materialize)")] = Path(
        "data/online"
    ),
    log_url: Annotated[
        str | None,
        typer.Option(
            "--log", help="decision log: sqlite:///path.db (default <repo>/decisions.db) or postgresql://..."
        ),
    ] = None,
    sqlite_sync: Annotated[
        str,
        typer.Option(help="SQLite synchronous: FULL (fsync per commit) | NORMAL (survives a process crash)"),
    ] = "FULL",
    max_body_bytes: Annotated[int, typer.Option(help="request size limit (bytes)")] = 16_384,
    refer_band: Annotated[
        float, typer.Option(help="refer when PD is within this share below the cutoff")
    ] = 0.1,
) -> None:
    """HTTP decision service: POST /v1/decisions, /healthz, /readyz, /metrics, /docs (docs/serving.md)."""
    import logging
    import os

    # one application per request: polars' and OpenMP's thread pools cost more than they save on one row,
    # and their idle spinning competes with the server for its core (p99 5 ms -> 0.4 ms for the merge)
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import uvicorn

    from cardlab.config import repo_root
    from cardlab.serve.app import Settings, SqliteSynchronous, create_app
    from cardlab.tracking import tracking_uri

    settings = Settings(
        tracking_uri=tracking_uri(),
        credit=credit,
        limit=limit,
        store=store,
        log_url=log_url or f"sqlite:///{repo_root() / 'decisions.db'}",
        sqlite_synchronous=cast(SqliteSynchronous, sqlite_sync.upper()),  # Settings validates it
        max_body_bytes=max_body_bytes,
        refer_band=refer_band,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    console.print(f"[green]cardlab serve[/] on http://{host}:{port} (docs: /docs, readiness: /readyz)")
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )


@app.command()
@friendly_errors
def verify(
    world: Annotated[Path, typer.Argument(help="world folder: manifest.json, raw/, oracle/")] = Path("data"),
) -> None:
    """Check a whole world against its manifest and the table contract (files, columns, rows, hashes, schemas)."""
    from cardlab.integrity import verify_whole_world

    report = verify_whole_world(world)
    rows = sum(t.rows for t in report.tables)
    console.print(
        f"[green]world {world} verified[/]: {len(report.tables)} tables, {rows:,} rows — files, columns, row "
        "counts and content hashes match manifest.json, every shard passes its schema"
    )


@app.command("check-params")
@friendly_errors
def check_params(
    out: Annotated[Path | None, typer.Option(help="write this marker file when valid (a DVC output)")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Validate params.yaml (and overrides). The pipeline's first stage: a typo stops `dvc repro` before DVC
    removes any stage's outputs."""
    load_params(params, set_)
    if out is not None:
        from cardlab.artifacts import atomic_file

        with atomic_file(out) as tmp:  # constant bytes: a valid params change invalidates no other stage
            tmp.write_text("params validated by `cardlab check-params`\n", encoding="utf-8")
    console.print(f"[green]{params} is valid[/]")


@app.command()
@friendly_errors
def docs(
    root: Annotated[Path, typer.Option(help="repository root (README.md, docs/, experiments/)")] = Path("."),
    check: Annotated[
        bool, typer.Option("--check", help="only report stale docs (exit 1), write nothing")
    ] = False,
) -> None:
    """Regenerate the results tables of README.md and docs/tasks/*.md from experiments/*/metrics.json."""
    from cardlab.reports.results import update_docs

    changed = update_docs(root, check=check)
    if check and changed:
        console.print(f"[bold red]stale:[/] {', '.join(changed)} (run `cardlab docs`)", highlight=False)
        sys.exit(1)
    verb = "stale" if check else "updated"
    console.print(f"results tables {verb}: {', '.join(changed) if changed else 'none (up to date)'}")


@app.command()
def summary(
    experiments: Annotated[Path, typer.Option(help="experiments root")] = Path("experiments"),
    data: Annotated[Path, typer.Option(help="data root")] = Path("data"),
    since: Annotated[
        float | None,
        typer.Option(help="start of this run (epoch seconds): outputs older than it were not written by it"),
    ] = None,
) -> None:
    """Print what the pipeline produced and how to look at it (not a stage; used by `make run`): per task its
    headline metrics and bars (cardlab.taskspec), the portfolio KPIs, and whether this run wrote each file."""
    import json

    from rich.table import Table

    out = Console()

    def provenance(path: Path) -> str:
        if since is None:
            return ""
        return "this run" if path.stat().st_mtime >= since else "not re-run (dvc: up to date; as in git)"

    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    table = Table(title="cardlab outputs", show_lines=True)
    table.add_column("output")
    table.add_column("headline")
    table.add_column("bars (met when the lower bound clears the threshold)")
    if since is not None:
        table.add_column("written by")
    manifest = data / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        rows = sum(t.get("rows", 0) for t in m.get("tables", {}).values() if isinstance(t, dict))
        world = f"preset {m.get('preset')}, seed {m.get('seed')}, {rows:,} rows"
        table.add_row(str(data / "raw"), world, "", *([provenance(manifest)] if since is not None else []))
    for name in taskspec.names():
        metrics_file = experiments / name / "metrics.json"
        if not metrics_file.exists():
            continue
        metrics = json.loads(metrics_file.read_text())
        head = ", ".join(f"{k}={fmt(metrics[k])}" for k in taskspec.get(name).headline if k in metrics)
        bars = "\n".join(
            f"{b['name']} {fmt(b['value'])} (lo {fmt(b['lower'])}) vs {fmt(b['threshold'])}: {b['verdict']}"
            for b in metrics.get("bars", [])
        )
        label = f"{name}\n{metrics_file}"
        table.add_row(label, head, bars, *([provenance(metrics_file)] if since is not None else []))
    kpis_file = experiments / "portfolio" / "kpis.json"
    if kpis_file.exists():
        k = json.loads(kpis_file.read_text())
        keys = (
            "booked_accounts",
            "active_rate",
            "approval_rate",
            "revolve_rate",
            "net_charge_off_rate_annualised",
        )
        head = ", ".join(f"{key}={fmt(k[key])}" for key in keys if key in k)
        table.add_row(
            str(kpis_file),
            f"as of {k.get('as_of_month')}: {head}",
            "",
            *([provenance(kpis_file)] if since is not None else []),
        )
    out.print(table)
    out.print(
        "Look at the results: [bold]make ui[/] (MLflow UI at http://127.0.0.1:5000), "
        "[bold]make lab[/] (notebooks/), HTML reports under experiments/*/report.html"
    )


def _verify_task_raw(module: Any, features_dir: Path) -> None:
    """Verify the raw tables a task's train/evaluate read (``RAW_TABLES`` of its module; the raw folder sits
    beside the features folder)."""
    tables = tuple(getattr(module, "RAW_TABLES", ()))
    if tables:
        _verified_raw(Path(features_dir).parent / "raw", tables)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

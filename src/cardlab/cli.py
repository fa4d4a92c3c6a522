"""`cardlab <verb>`: one verb per DVC stage.

Every verb reads params.yaml (``--params``), accepts ``--set section.key=value`` overrides and explicit
paths, so it runs the same inside DVC and by hand. Bad input stops the verb with a message naming what is
wrong (exit code 2) and leaves earlier outputs intact.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cardlab.config import TASKS, ParamsError, load_params

app = typer.Typer(
    name="cardlab",
    help="cardlab: co-branded credit-card research lab on a synthetic world with a sealed oracle.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a param, e.g. --set simulate.seed=11 (repeatable)"),
]


def _task(value: str) -> str:
    if value not in TASKS:
        raise typer.BadParameter(f"unknown task {value!r}; choose one of {', '.join(TASKS)}")
    return value


TaskArg = Annotated[str, typer.Argument(help=f"task: one of {', '.join(TASKS)}", callback=_task)]


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors users can fix into one red line and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cardlab.artifacts import OutputError

        try:
            return fn(*args, **kwargs)
        except (ParamsError, OutputError, FileNotFoundError, ValueError, LookupError) as err:
            console.print(f"[bold red]error:[/] {err}", highlight=False)
            sys.exit(2)

    return wrapper


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
    p = load_params(params, overrides).simulate
    from cardlab.world.simulate import simulate as run_simulation

    manifest = run_simulation(p, out, workers=p.workers, progress=True)
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
    p = load_params(params, set_).features
    from cardlab.features.build import build_features

    summary = build_features(p, raw, out, progress=True)
    for task, n in summary.get("rows", {}).items():
        console.print(f"[green]{task}[/]: {n:,} snapshot rows")


@app.command()
@friendly_errors
def tune(
    task: TaskArg,
    features_dir: Annotated[Path, typer.Option("--features", help="features root")] = Path("data/features"),
    out: Annotated[Path, typer.Option(help="experiments root")] = Path("experiments"),
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Optuna study for TASK (resumable by name); writes experiments/TASK/best_params.json."""
    p = load_params(params, set_)
    from cardlab.tasks import get_task

    get_task(task).tune(p, features_dir, out / task)


@app.command()
@friendly_errors
def train(
    task: TaskArg,
    features_dir: Annotated[Path, typer.Option("--features", help="features root")] = Path("data/features"),
    out: Annotated[Path, typer.Option(help="experiments root")] = Path("experiments"),
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Fit TASK's final model(s) with the tuned params; writes experiments/TASK/model/."""
    p = load_params(params, set_)
    from cardlab.tasks import get_task

    get_task(task).train(p, features_dir, out / task)


@app.command()
@friendly_errors
def evaluate(
    task: TaskArg,
    features_dir: Annotated[Path, typer.Option("--features", help="features root")] = Path("data/features"),
    oracle: Annotated[Path, typer.Option(help="oracle folder (evaluation only)")] = Path("data/oracle"),
    out: Annotated[Path, typer.Option(help="experiments root")] = Path("experiments"),
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Grade TASK against the oracle; writes metrics.json, predictions.parquet, plots; registers the model."""
    p = load_params(params, set_)
    from cardlab.tasks import get_task

    metrics = get_task(task).evaluate(p, features_dir, oracle, out / task)
    shown = {k: v for k, v in metrics.items() if isinstance(v, float | int)}
    for k in sorted(shown)[:12]:
        console.print(f"  {k:<28} {shown[k]:.4f}" if isinstance(shown[k], float) else f"  {k:<28} {shown[k]}")


@app.command()
@friendly_errors
def explain(
    task: TaskArg,
    features_dir: Annotated[Path, typer.Option("--features", help="features root")] = Path("data/features"),
    oracle: Annotated[Path, typer.Option(help="oracle folder (true drivers, evaluation only)")] = Path(
        "data/oracle"
    ),
    out: Annotated[Path, typer.Option(help="experiments root")] = Path("experiments"),
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """SHAP explanations, reason codes, faithfulness vs the true drivers, and the bank-facing report.html."""
    p = load_params(params, set_)
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
) -> None:
    """Print what the pipeline produced and how to look at it (not a stage; used by `make run`)."""
    import json

    from rich.table import Table

    out = Console()
    table = Table(title="cardlab outputs", show_lines=False)
    table.add_column("output")
    table.add_column("headline")
    manifest = data / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        rows = sum(t.get("rows", 0) for t in m.get("tables", {}).values() if isinstance(t, dict))
        table.add_row(str(data / "raw"), f"preset {m.get('preset')}, seed {m.get('seed')}, {rows:,} rows")
    for metrics_file in sorted(experiments.glob("*/*.json")):
        if metrics_file.name not in ("metrics.json", "kpis.json"):
            continue
        metrics = json.loads(metrics_file.read_text())
        keys = [k for k in metrics if k.startswith(("oot_", "profit", "qini", "policy"))][:4]
        table.add_row(
            str(metrics_file),
            ", ".join(f"{k}={metrics[k]:.3g}" for k in keys if isinstance(metrics[k], int | float)),
        )
    out.print(table)
    out.print(
        "Look at the results: [bold]make ui[/] (MLflow UI at http://127.0.0.1:5000), "
        "[bold]make lab[/] (notebooks/), HTML reports under experiments/*/report.html"
    )


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

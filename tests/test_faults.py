"""Fault injection (issue 20): each way cardlab used to fail *open* is reproduced here — damaged shards, kills by
signal at chosen moments, concurrent tuners, a changed objective, an occupied port, a full disk, typo'd params
(issue 21) — and the fail-closed behaviour is asserted. docs/reliability.md maps each guarantee to its test.

Everything runs on a tiny world (1,500 customers in 3 shards) and a throw-away MLflow store. Kill points come
from ``CARDLAB_FAULT=<point>:<SIGNAL>`` (:func:`cardlab.artifacts.fault_point`: the process signals itself at a
named moment) or from watching a real subprocess and signalling it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost as xgb
from typer.testing import CliRunner

from cardlab.artifacts import dir_digest
from cardlab.cli import app, friendly_errors
from cardlab.errors import InputDataError
from cardlab.world import schemas

REPO = Path(__file__).resolve().parents[1]
PARAMS = str(REPO / "params.yaml")
CARDLAB = str(Path(sys.executable).parent / "cardlab")
TINY = ["--set", "simulate.presets.ci.n_customers=1500", "--set", "simulate.presets.ci.shard_size=500"]
FAST_TUNE = [
    "--set",
    "tune.n_trials=3",
    "--set",
    "tune.screen_repeats=0",
    "--set",
    "tune.num_boost_round=30",
    "--set",
    "tune.early_stopping_rounds=10",
]
FAST_EVAL = ["--set", "credit.bootstrap=10", "--set", "explain.global_sample=300"]


# ---------------------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _restore_sigterm():
    """The CLI installs a SIGTERM handler when invoked in-process; give pytest its own back."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("faults_store")


@pytest.fixture
def store(store_dir, monkeypatch):
    """A throw-away MLflow store (and artifact root) shared by this module's runs, subprocesses included; set
    per test, so that nothing else in the session (e.g. the pipeline_root fixture) sees CARDLAB_ROOT moved."""
    monkeypatch.setenv("CARDLAB_ROOT", str(store_dir))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store_dir / 'mlflow.db'}")
    monkeypatch.delenv("CARDLAB_FAULT", raising=False)
    yield store_dir
    import mlflow

    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A tiny world (3 shards) with its features: DIR/raw, DIR/oracle, DIR/manifest.json, DIR/features."""
    root = tmp_path_factory.mktemp("faults_world") / "w"
    ok(invoke("simulate", "--params", PARAMS, "--workers", "1", "--out", str(root), *TINY))
    ok(invoke("features", "--params", PARAMS, "--raw", str(root / "raw"), "--out", str(root / "features")))
    return root


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def ok(result) -> None:
    assert result.exit_code == 0, result.output + "".join(map(str, [result.exception or ""]))


def fails_with_one_line(result, *fragments: str) -> str:
    """Exit code 2 and, as the last line of output, one error line (no traceback) holding every fragment;
    returns that line (progress lines before it are fine)."""
    text = result.output.strip()
    assert result.exit_code == 2, f"exit {result.exit_code}: {text}\n{result.exception!r}"
    assert "Traceback" not in text, text
    line = text.splitlines()[-1]
    assert line.startswith("error: ") and text.count("error:") == 1, text
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def cli(*args: str, fault: str | None = None, **kwargs) -> subprocess.Popen:
    """``cardlab ARGS`` in a subprocess (optionally with a fault point armed)."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("CARDLAB_FAULT", None)
    if fault:
        env["CARDLAB_FAULT"] = fault
    env.update(kwargs.pop("env", {}))
    return subprocess.Popen(
        [CARDLAB, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def tmp_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp-" in p.name)


def copy_world(world: Path, dest: Path, *, oracle: bool = False) -> Path:
    dest.mkdir(parents=True)
    for name in ("raw", "features", *(("oracle",) if oracle else ())):
        shutil.copytree(world / name, dest / name)
    shutil.copy(world / "manifest.json", dest / "manifest.json")
    return dest


# ---------------------------------------------------------------------------------------------------------
# 3. damaged raw data is refused, naming table, file and rule; nothing is overwritten
# ---------------------------------------------------------------------------------------------------------
def _rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def _drop(column: str) -> Callable[[pa.Table], pa.Table]:
    return lambda t: t.drop_columns([column])


def _negative_first(column: str) -> Callable[[pa.Table], pa.Table]:
    def change(t: pa.Table) -> pa.Table:
        values = t[column].to_numpy().copy()
        values[0] = -500
        return t.set_column(t.schema.get_field_index(column), t.schema.field(column), pa.array(values))

    return change


def _damage_all_statements_drop_cash_advance(w: Path) -> None:
    for f in sorted((w / "raw" / "statements").glob("*.parquet")):
        _rewrite(f, _drop("cash_advance"))


DAMAGES: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    # the case: a column the features stage does not require, dropped from every shard
    "optional column dropped": (
        _damage_all_statements_drop_cash_advance,
        ("raw/statements", "part-00000.parquet", "rule 'columns'", "cash_advance"),
    ),
    "shard emptied": (
        lambda w: _rewrite(w / "raw/statements/part-00001.parquet", lambda t: t.slice(0, 0)),
        ("raw/statements", "part-00001.parquet", "rule 'rows'", "part-00001.parquet: 0"),
    ),
    "second shard only": (
        lambda w: _rewrite(w / "raw/statements/part-00001.parquet", _drop("dpd")),
        ("raw/statements", "part-00001.parquet", "rule 'columns'", "dpd"),
    ),
    "values changed, schema intact": (
        lambda w: _rewrite(w / "raw/statements/part-00002.parquet", _negative_first("purchases")),
        ("raw/statements", "part-00002.parquet", "rule 'schema:greater_than_or_equal_to'", "purchases"),
    ),
    "shard deleted": (
        lambda w: (w / "raw/orders/part-00002.parquet").unlink(),
        ("raw/orders", "rule 'files'", "missing shard file(s) part-00002.parquet"),
    ),
    "file truncated": (
        lambda w: (w / "raw/customers/part-00000.parquet").write_bytes(
            (w / "raw/customers/part-00000.parquet").read_bytes()[:300]
        ),
        ("raw/customers", "part-00000.parquet", "rule 'parquet'"),
    ),
    "manifest missing": (lambda w: (w / "manifest.json").unlink(), ("manifest.json is missing",)),
    # a world written without write-time validation: its hash vouches for nothing, so readers run pandera
    "bad values, uncertified world": (
        lambda w: _uncertified_with_bad_values(w),
        ("raw/statements", "part-00000.parquet", "rule 'schema:greater_than_or_equal_to'", "purchases"),
    ),
}


def _uncertified_with_bad_values(w: Path) -> None:
    _rewrite(w / "raw/statements/part-00000.parquet", _negative_first("purchases"))
    manifest = json.loads((w / "manifest.json").read_text())
    manifest["params"]["validate_schemas"] = False
    manifest["tables"]["raw/statements"]["sha256"] = dir_digest(w / "raw" / "statements")
    (w / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_raw_stops_features_and_verify(world, tmp_path, damage):
    w = copy_world(world, tmp_path / "w")
    apply, fragments = DAMAGES[damage]
    apply(w)
    before = dir_digest(w / "features")
    line = fails_with_one_line(
        invoke("features", "--params", PARAMS, "--raw", str(w / "raw"), "--out", str(w / "features")),
        *fragments,
    )
    assert dir_digest(w / "features") == before, "the previous features were overwritten"
    assert tmp_entries(w) == []
    assert fails_with_one_line(invoke("verify", str(w)), *fragments) == line


def test_intact_world_verifies(world):
    res = invoke("verify", str(world))
    ok(res)
    assert f"{len(schemas.RAW) + len(schemas.ORACLE)} tables" in res.output


def test_every_stage_that_reads_raw_verifies_it(world, tmp_path):
    """report, and churn's train/evaluate (raw statements), refuse the damaged world before any work."""
    w = copy_world(world, tmp_path / "w", oracle=True)
    _damage_all_statements_drop_cash_advance(w)
    frag = ("raw/statements", "rule 'columns'", "cash_advance")
    report = ["report", "--params", PARAMS, "--raw", str(w / "raw"), "--oracle", str(w / "oracle")]
    fails_with_one_line(invoke(*report, "--out", str(tmp_path / "portfolio")), *frag)
    task = ["--params", PARAMS, "--features", str(w / "features"), "--out", str(tmp_path / "exp")]
    fails_with_one_line(invoke("train", "churn", *task), *frag)
    fails_with_one_line(invoke("evaluate", "churn", *task, "--oracle", str(w / "oracle")), *frag)
    assert not (tmp_path / "portfolio").exists() or not any((tmp_path / "portfolio").iterdir())


# ---------------------------------------------------------------------------------------------------------
# 6/7. clear failures: existing file as --out, unwritable --out before work, a full disk, damaged model files
# ---------------------------------------------------------------------------------------------------------
def test_an_existing_file_given_as_out_is_refused(world, tmp_path):
    target = tmp_path / "a.out"  # a suffix: the check used to skip such names and replace the file
    target.write_text("x\n")
    fails_with_one_line(
        invoke("features", "--params", PARAMS, "--raw", str(world / "raw"), "--out", str(target)),
        str(target),
        "exists and is a file",
    )
    assert target.read_text() == "x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.out"]


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )


def _umount(path: Path) -> None:
    # lazy: a file handle the failed writer has not yet closed must not keep the mount alive
    subprocess.run(["umount", "--lazy", str(path)], capture_output=True, check=True)


@pytest.fixture
def readonly_dir(tmp_path):
    """A place nobody may write: a read-only tmpfs as root (root ignores file modes), else a 0555 folder."""
    path = tmp_path / "ro"
    if os.geteuid() == 0:
        if not _mount_tmpfs(path, "ro,size=64k"):
            pytest.skip("running as root without permission to mount a read-only tmpfs")
        yield path
        _umount(path)
    else:
        path.mkdir()
        path.chmod(0o555)
        yield path
        path.chmod(0o755)


def test_unwritable_out_is_refused_before_any_work(readonly_dir, tmp_path):
    """tune used to screen features for 82 s and then fail with a traceback. The output place is now checked
    first: with features that do not even exist, the error is still about the output place."""
    out = readonly_dir / "experiments"
    res = invoke(
        "tune", "credit", "--params", PARAMS, "--features", str(tmp_path / "absent"), "--out", str(out)
    )
    fails_with_one_line(res, str(out / "credit"))


def test_a_full_disk_is_one_line_and_leaves_nothing(world, tmp_path):
    disk = tmp_path / "small_disk"
    if not _mount_tmpfs(disk, "size=128k"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        res = invoke(
            "features", "--params", PARAMS, "--raw", str(world / "raw"), "--out", str(disk / "features")
        )
        fails_with_one_line(res, "no space left on the device while writing", str(disk))
        assert list(disk.iterdir()) == [], "partial outputs were left on the full disk"
    finally:
        _umount(disk)


def _tiny_model(world: Path, out: Path) -> None:
    """A real (small) credit booster and its features.json in out/model/, as train writes them."""
    import pandas as pd

    frame = pd.read_parquet(world / "features" / "credit")
    features = ["app_legacy_score"] if "app_legacy_score" in frame else [frame.columns[-1]]
    frame = frame[frame["label"].notna()]
    booster = xgb.train(
        {"max_depth": 2, "verbosity": 0},
        xgb.DMatrix(frame[features].astype("float32"), label=frame["label"], feature_names=features),
        5,
    )
    (out / "model").mkdir(parents=True)
    booster.save_model(str(out / "model" / "model.ubj"))
    (out / "model" / "features.json").write_text(json.dumps({"features": features, "directions": {}}))


@pytest.mark.parametrize(
    ("damage", "fragments"),
    [
        ("truncate", ("model.ubj", "not a readable XGBoost model", "re-run `cardlab train credit`")),
        ("bad_json", ("features.json", "not valid JSON (line 1", "re-run `cardlab train credit`")),
        ("missing", ("model is missing", "run `cardlab train credit` first")),
    ],
)
def test_damaged_model_files_are_named(world, tmp_path, damage, fragments):
    out = tmp_path / "exp" / "credit"
    _tiny_model(world, out)
    if damage == "truncate":
        ubj = out / "model" / "model.ubj"
        ubj.write_bytes(ubj.read_bytes()[:200])
    elif damage == "bad_json":
        (out / "model" / "features.json").write_text('{"features": [')
    else:
        shutil.rmtree(out / "model")
    args = ["--params", PARAMS, "--features", str(world / "features"), "--oracle", str(world / "oracle")]
    fails_with_one_line(invoke("evaluate", "credit", *args, "--out", str(tmp_path / "exp")), *fragments)


def test_unanticipated_errors_keep_their_traceback():
    """No blanket `except ValueError`: a bug surfaces as itself, an anticipated failure as one line."""

    @friendly_errors
    def buggy() -> None:
        raise ValueError("an internal bug")

    @friendly_errors
    def lookup_bug() -> None:
        return {}["missing"]

    @friendly_errors
    def anticipated() -> None:
        raise InputDataError("x.json: not valid JSON; re-run the stage")

    with pytest.raises(ValueError, match="an internal bug"):
        buggy()
    with pytest.raises(KeyError):
        lookup_bug()
    with pytest.raises(SystemExit) as exit_:
        anticipated()
    assert exit_.value.code == 2


# ---------------------------------------------------------------------------------------------------------
# 1/4/5. tuning: one tuner per study, kills leave a resumable study and KILLED runs, changed code = new study
# ---------------------------------------------------------------------------------------------------------
def _studies(out: Path) -> dict[str, list]:
    storage = optuna.storages.journal.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "optuna.journal"))
    )
    return {s.study_name: storage.get_all_trials(s._study_id) for s in storage.get_all_studies()}


def _finished(trials: list) -> list:
    return [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]


def _tune_runs(name_prefix: str) -> list:
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    exp = MlflowClient().get_experiment_by_name("cardlab-credit")
    runs = MlflowClient().search_runs([exp.experiment_id], filter_string="tags.dvc_stage = 'tune@credit'")
    return sorted(
        (r for r in runs if r.info.run_name.startswith(name_prefix)), key=lambda r: r.info.start_time
    )


def test_a_study_has_one_tuner_survives_kills_and_resumes_exactly(world, tmp_path, store):
    tune = ["tune", "credit", "--params", PARAMS, "--features", str(world / "features"), *FAST_TUNE]
    out = tmp_path / "exp"
    # A stops itself after its first trial, holding the study's lock
    a = cli(*tune, "--out", str(out), fault="tune.trial.0:SIGSTOP")
    wait_for(lambda: psutil.Process(a.pid).status() == psutil.STATUS_STOPPED, 240, "tuner A to stop")
    # B on the same study refuses at once, naming A (it used to draw A's trials again and overshoot n_trials)
    code, text = finish(cli(*tune, "--out", str(out)))
    assert code == 2, text
    assert f"is being tuned by pid {a.pid}" in text and ".tune.lock" in text
    # A is killed (SIGKILL): its MLflow run is left RUNNING, its finished trial stays in the journal
    a.kill()
    a.wait()
    ((name, trials),) = _studies(out / "credit").items()
    assert len(_finished(trials)) == 1
    first = _tune_runs(f"credit-tune-{name.split('-')[-1]}")
    assert [r.info.status for r in first] == ["RUNNING"]
    # C resumes and is stopped by SIGTERM after its second trial: it exits 143 and ends its run KILLED;
    # starting, it marked A's orphaned run KILLED
    code, text = finish(cli(*tune, "--out", str(out), fault="tune.trial.1:SIGTERM"))
    assert code == 143 and "terminated" in text, text
    assert [r.info.status for r in _tune_runs("credit-tune-")] == ["KILLED", "KILLED"]
    # D finishes exactly the missing trial; the result equals an uninterrupted study's, byte for byte
    ok(invoke(*tune, "--out", str(out)))
    assert "resumed with 2 finished" in _tune_runs("credit-tune-")[-1].data.tags["mlflow.note.content"]
    ((_, trials),) = _studies(out / "credit").items()
    assert len(_finished(trials)) == 3
    ok(invoke(*tune, "--out", str(tmp_path / "reference")))
    reference = tmp_path / "reference" / "credit"
    assert (out / "credit" / "best_params.json").read_bytes() == (reference / "best_params.json").read_bytes()
    ((_, ref_trials),) = _studies(reference).items()
    assert [t.params for t in _finished(trials)] == [t.params for t in _finished(ref_trials)]


def test_changed_code_starts_a_new_study_same_code_resumes(world, tmp_path, store):
    """The issue's defect: after a code change the finished study was *resumed* and best_params.json kept."""
    tune = ["tune", "credit", "--params", PARAMS, "--features", str(world / "features"), *FAST_TUNE]
    out = tmp_path / "exp"
    ok(invoke(*tune, "--out", str(out)))
    (first,) = _studies(out / "credit")
    # the same command with a copy of the package whose feature screen (modeling/screen.py) changed
    import cardlab

    src = tmp_path / "src"  # a copy of the package under test, wherever it was imported from
    shutil.copytree(
        Path(cardlab.__file__).parent, src / "cardlab", ignore=shutil.ignore_patterns("__pycache__")
    )
    with (src / "cardlab" / "modeling" / "screen.py").open("a") as fh:
        fh.write("\n# a change to the screen: a new study, never a resumed one\n")
    code, text = finish(cli(*tune, "--out", str(out), env={"PYTHONPATH": str(src)}))
    assert code == 0, text
    studies = _studies(out / "credit")
    assert len(studies) == 2, f"the changed code resumed study {first} instead of starting its own"
    (second,) = set(studies) - {first}
    assert len(_finished(studies[second])) == 3
    assert (
        "resumed with 0 finished"
        in _tune_runs(f"credit-tune-{second.split('-')[-1]}")[0].data.tags["mlflow.note.content"]
    )
    # the unchanged code resumes its own finished study: no new trial
    ok(invoke(*tune, "--out", str(out)))
    assert {k: len(v) for k, v in _studies(out / "credit").items()} == {first: 3, second: 3}


# ---------------------------------------------------------------------------------------------------------
# 2. the registered challenger is exactly the evaluated model; no duplicate versions on re-runs
# ---------------------------------------------------------------------------------------------------------
def _versions() -> list:
    from mlflow.tracking import MlflowClient

    return sorted(
        MlflowClient().search_model_versions("name = 'cardlab-credit'"), key=lambda v: int(v.version)
    )


def _predict_like(version: str, model_dir: Path, rows: np.ndarray) -> bool:
    """Whether registered ``version`` predicts exactly as the booster in ``model_dir`` on ``rows``."""
    import mlflow.xgboost

    registered = mlflow.xgboost.load_model(f"models:/cardlab-credit/{version}")
    on_disk = xgb.Booster()
    on_disk.load_model(str(model_dir / "model.ubj"))
    return bool(np.array_equal(registered.inplace_predict(rows), on_disk.inplace_predict(rows)))


def test_registered_model_is_the_evaluated_model(world, tmp_path, store):
    import pandas as pd

    exp = tmp_path / "exp"
    out = exp / "credit"
    out.mkdir(parents=True)
    common = ["--params", PARAMS, "--features", str(world / "features"), "--out", str(exp), *FAST_TUNE]
    features = json.loads((world / "features" / "feature_dictionary.json").read_text())
    names = [f["name"] for f in (features["features"] if isinstance(features, dict) else features)]
    credit = pd.read_parquet(world / "features" / "credit")
    kept = [n for n in names if n in credit.columns][:12]

    def tuned(depth: int, rate: float, **extra: float) -> None:
        best = {"max_depth": depth, "learning_rate": rate, "min_child_weight": 1.0, "subsample": 1.0}
        best |= {"colsample_bytree": 1.0, "reg_lambda": 1.0, **extra}
        (out / "best_params.json").write_text(
            json.dumps({"best_params": best, "features": kept, "n_trials": 1})
        )

    # model A, trained and logged completely: the run pointer describes it
    tuned(2, 0.1)
    ok(invoke("train", "credit", *common))
    saved_a = tmp_path / "model_a"
    shutil.copytree(out / "model", saved_a)
    assert json.loads((out / ".mlflow_run").read_text())["model_digest"] == dir_digest(saved_a)
    # model B: train is killed after model/ was replaced and before anything reached MLflow
    # a 1,500-customer world has so few defaults that a booster may find no split at all; a different
    # intercept makes B's predictions differ from A's whatever the trees learn
    tuned(4, 0.3, base_score=0.5)
    code, text = finish(cli("train", "credit", *common, fault="train.model_written:SIGKILL"))
    assert code == -signal.SIGKILL, text
    digest_b = dir_digest(out / "model")
    assert digest_b != dir_digest(saved_a)
    assert not (out / ".mlflow_run").exists(), "a run pointer survived that describes the replaced model"
    # evaluate registers exactly the model it scored (B), not the artifact of A's run
    evaluate = ["evaluate", "credit", *common, "--oracle", str(world / "oracle"), *FAST_EVAL]
    ok(invoke(*evaluate))
    (v1,) = _versions()
    assert v1.tags["model_digest"] == digest_b
    rows = credit[kept].astype("float32").head(50).to_numpy()
    assert _predict_like(v1.version, out / "model", rows)
    assert not _predict_like(v1.version, saved_a, rows)
    # a re-run of evaluate returns the existing version: no duplicate
    ok(invoke(*evaluate))
    assert [v.version for v in _versions()] == [v1.version]
    # model/ switched back to A under a pointer that describes B (as `dvc checkout` of an older commit does):
    # the digests differ, so A is logged from this evaluation and registered as what it is
    shutil.rmtree(out / "model")
    shutil.copytree(saved_a, out / "model")
    ok(invoke(*evaluate))
    v1_again, v2 = _versions()
    assert v2.tags["model_digest"] == dir_digest(saved_a) and _predict_like(v2.version, saved_a, rows)
    assert v1_again.tags["model_digest"] == digest_b


# ---------------------------------------------------------------------------------------------------------
# 5. kills: workers die with their parent, SIGTERM cleans up, stale staging is swept at the next start
# ---------------------------------------------------------------------------------------------------------
SIM_BIG = ["--set", "simulate.presets.ci.n_customers=6000", "--set", "simulate.presets.ci.shard_size=300"]


def _staged_parquet(out: Path) -> bool:
    return any(out.glob(".staging.tmp-*/raw/*/*.parquet"))


def _start_simulate(out: Path) -> tuple[subprocess.Popen, list[psutil.Process]]:
    proc = cli("simulate", "--params", PARAMS, "--workers", "2", "--out", str(out), *SIM_BIG)
    wait_for(lambda: _staged_parquet(out) or proc.poll() is not None, 240, "the first shard to be written")
    assert proc.poll() is None, finish(proc)[1]
    return proc, psutil.Process(proc.pid).children(recursive=True)


def _all_gone(procs: list[psutil.Process]) -> bool:
    return not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)


def test_simulate_killed_leaves_no_workers_and_next_start_sweeps(world, tmp_path):
    out = tmp_path / "world"
    proc, family = _start_simulate(out)
    assert len(family) >= 3, "expected the forkserver and two workers"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_for(lambda: _all_gone(family), 15, "the simulate workers to die with their parent")
    assert _staged_parquet(out), "the staging folder should be there, as a SIGKILL leaves it"
    ok(invoke("simulate", "--params", PARAMS, "--workers", "1", "--out", str(out), *TINY))
    assert tmp_entries(out) == [], "the stale staging folder was not swept"
    ok(invoke("verify", str(out)))


def test_sigterm_stops_simulate_cleanly(world, tmp_path):
    out = tmp_path / "world"
    out.mkdir()
    (out / "manifest.json").write_text('{"earlier": "world"}\n')
    proc, family = _start_simulate(out)
    proc.send_signal(signal.SIGTERM)
    code, text = finish(proc, timeout=60)
    assert code == 143 and "terminated" in text, text
    wait_for(lambda: _all_gone(family), 15, "the simulate workers to stop")
    assert tmp_entries(out) == [] and (out / "manifest.json").read_text() == '{"earlier": "world"}\n'


def test_killed_features_leave_a_temporary_folder_the_next_start_sweeps(world, tmp_path):
    w = copy_world(world, tmp_path / "w")
    before = dir_digest(w / "features")
    args = ["features", "--params", PARAMS, "--raw", str(w / "raw"), "--out", str(w / "features")]
    code, text = finish(cli(*args, fault="atomic_dir.features:SIGKILL"))
    assert code == -signal.SIGKILL, text
    assert [n for n in tmp_entries(w) if n.startswith(".features.tmp-")], "the kill left no temporary folder"
    assert dir_digest(w / "features") == before
    ok(invoke(*args))
    assert tmp_entries(w) == []


# ---------------------------------------------------------------------------------------------------------
# 8. make ui refuses a taken port
# ---------------------------------------------------------------------------------------------------------
def test_make_ui_refuses_a_taken_port():
    with socket.socket() as taken:
        for port in range(19050, 19100):  # this stream's port range
            try:
                taken.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
        taken.listen()
        res = subprocess.run(
            ["make", "-o", "venv", "ui", f"PORT={port}"], cwd=REPO, capture_output=True, text=True, timeout=60
        )
    assert res.returncode != 0
    assert f"port {port} on 127.0.0.1 is taken" in res.stderr and "make ui PORT=" in res.stderr


# ---------------------------------------------------------------------------------------------------------
# issue 21: a params typo in any section stops `make run` before DVC deletes anything
# ---------------------------------------------------------------------------------------------------------
TYPOS = {
    "simulate": ("simulate", "sead", 7),
    "features": ("features", "windowz", [1, 3]),
    "tune": ("tune", "n_trial", 10),
    "credit": ("credit", "min_oot_aux", 0.7),
    "limit": ("limit", "max_line_yuna", 100000),
    "churn": ("churn", "offer_cost_yaun", 50.0),
    "tracking": ("tracking", "experiment_prefx", "cardlab"),
    "report": ("report", "ci_levle", 0.95),
    "explain": ("explain", "top_reason", 4),
}


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every output file's size, mtime and inode: any rewrite or removal by DVC changes it."""
    files = [
        root / "dvc.lock",
        *(p for d in ("data", "experiments") for p in (root / d).rglob("*") if p.is_file()),
    ]
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino) for p in files
    }


@pytest.fixture(scope="module")
def repo_copy(pipeline_root, tmp_path_factory) -> Path:
    """The repository with its pipeline outputs, copied (DVC runs there without git; the venv is shared)."""
    root = tmp_path_factory.mktemp("typo") / "repo"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for rel in tracked.split():
        if (REPO / rel).is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, root / rel)
    for d in ("data", "experiments"):
        shutil.copytree(pipeline_root / d, root / d, dirs_exist_ok=True, symlinks=True)
    shutil.copy2(pipeline_root / "dvc.lock", root / "dvc.lock")
    (root / ".dvc" / "config.local").write_text("[core]\n    no_scm = true\n")
    (root / ".venv").symlink_to(REPO / ".venv")
    return root


@pytest.mark.slow
def test_a_params_typo_in_any_section_deletes_nothing(repo_copy):
    import yaml

    params = repo_copy / "params.yaml"
    good = params.read_text()
    before = _snapshot(repo_copy)
    cases = [(s, *TYPOS[s]) for s in TYPOS] + [("simulate.preset", "simulate", "preset", "devv")]
    for label, section, key, value in cases:
        cfg = yaml.safe_load(good)
        cfg[section][key] = value
        params.write_text(yaml.safe_dump(cfg, sort_keys=False))
        res = subprocess.run(["make", "-o", "venv", "run"], cwd=repo_copy, capture_output=True, text=True)
        params.write_text(good)
        assert res.returncode != 0, f"{label}: make run succeeded with a typo"
        assert f"{section}.{key}" in res.stdout + res.stderr, f"{label}: the error does not name the key"
        assert _snapshot(repo_copy) == before, f"{label}: outputs changed although params were invalid"


@pytest.mark.slow
def test_a_valid_params_change_invalidates_only_its_readers(repo_copy):
    import yaml

    def changed() -> set[str]:
        res = subprocess.run(
            [str(repo_copy / ".venv" / "bin" / "dvc"), "status", "--json"],
            cwd=repo_copy,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
        return set(json.loads(res.stdout or "{}"))

    params = repo_copy / "params.yaml"
    good = params.read_text()
    baseline = changed()
    cfg = yaml.safe_load(good)
    cfg["report"]["srm_alpha"] = 0.002
    params.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        stale = changed() - baseline
    finally:
        params.write_text(good)
    assert stale == {"check-params", "report"} - baseline, stale

"""Shared modelling machinery: monotone constraints hold (ICE), Optuna studies are reproducible and resume
after a crash without repeating finished trials."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
import xgboost as xgb
from optuna.trial import TrialState

from cardlab.config import TuneParams
from cardlab.modeling.screen import shadow_screen
from cardlab.modeling.tuning import run_study
from cardlab.modeling.xgb import TaskData, base_params, fit_booster


def _frames(seed: int = 0, n: int = 3000) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    # x0 raises risk, x1 lowers it, x2 has a non-monotone effect, x3 is noise
    logit = 1.2 * X[:, 0] - 0.8 * X[:, 1] + 0.9 * np.sin(2 * X[:, 2]) - 2.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    df = pd.DataFrame(X, columns=["x0", "x1", "x2", "x3"]).assign(label=y)
    cut1, cut2 = int(n * 0.6), int(n * 0.8)
    return {"train": df[:cut1], "valid": df[cut1:cut2], "oot": df[cut2:]}


@pytest.fixture(scope="module")
def data() -> TaskData:
    return TaskData(
        frames=_frames(), features=["x0", "x1", "x2", "x3"], directions={"x0": 1, "x1": -1, "x2": 0, "x3": 0}
    )


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("CARDLAB_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def test_monotone_constraints_hold_on_ice_curves(data):
    params = {**base_params(TuneParams()), "monotone_constraints": data.monotone, "max_depth": 4}
    booster = fit_booster(
        params, data.matrix("train"), data.matrix("valid"), num_boost_round=200, early_stopping_rounds=30
    )
    sample = data.frames["oot"][data.features].head(200).to_numpy(dtype="float32")
    grid = np.linspace(-3, 3, 25, dtype="float32")
    for j, name in enumerate(data.features):
        direction = data.directions[name]
        if direction == 0:
            continue
        ice = np.empty((len(sample), len(grid)))
        for g, value in enumerate(grid):
            rows = sample.copy()
            rows[:, j] = value
            ice[:, g] = booster.predict(xgb.DMatrix(rows, feature_names=data.features), output_margin=True)
        steps = np.diff(ice, axis=1) * direction
        assert (steps >= -1e-6).all(), f"{name} breaks its monotone direction {direction:+d}"
        assert (ice[:, -1] - ice[:, 0]).mean() * direction > 0, f"{name} has no effect at all"


def _study(store, data, n_trials: int, out) -> optuna.Study:
    tune = TuneParams(n_trials=n_trials, num_boost_round=60, early_stopping_rounds=10)
    return run_study(
        task="unit",
        tune=tune,
        seed=7,
        out_dir=out,
        data_digest="fixed",
        base=base_params(tune, eval_metric="logloss"),
        dtrain=data.matrix("train"),
        dvalid=data.matrix("valid"),
        fixed={"monotone_constraints": data.monotone},
        direction="minimize",
        metric="logloss",
        experiment_name="cardlab-unit",
    )


def test_two_runs_give_the_same_best_params(store, data):
    a = _study(store, data, 6, store / "a")
    b = _study(store, data, 6, store / "b")
    assert a.best_params == b.best_params
    assert a.best_value == pytest.approx(b.best_value, abs=0)


class Killed(Exception):
    """Stands in for the process being killed between trials."""


def test_killed_study_resumes_without_repeating_finished_trials(store, data, monkeypatch):
    out = store / "resume"
    uninterrupted = _study(store, data, 6, store / "reference")

    # first attempt: dies after its third trial, with a fourth trial left RUNNING (as a SIGKILL would leave it)
    import cardlab.modeling.tuning as tuning

    real_optimize = optuna.Study.optimize
    calls = {"n": 0}

    def dying_optimize(self, *args, **kwargs):
        if calls["n"] == 3:
            self.ask()  # a trial the killed process had started but never finished
            raise Killed
        calls["n"] += 1
        return real_optimize(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "optimize", dying_optimize)
    with pytest.raises(Killed):
        _study(store, data, 6, out)
    monkeypatch.setattr(optuna.Study, "optimize", real_optimize)

    storage = tuning.storage_for(TuneParams(n_trials=6, num_boost_round=60, early_stopping_rounds=10), out)
    name = optuna.get_all_study_summaries(storage)[0].study_name
    before = optuna.load_study(study_name=name, storage=storage).trials
    finished_before = [t for t in before if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished_before) == 3
    assert any(t.state == TrialState.RUNNING for t in before)

    resumed = _study(store, data, 6, out)
    finished = [t for t in resumed.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6, "the resumed study must finish exactly the missing trials"
    # the three trials finished before the crash are kept, not re-run
    assert [t.params for t in finished[:3]] == [t.params for t in finished_before]
    assert [t.number for t in finished[:3]] == [t.number for t in finished_before]
    # the interrupted trial is marked FAIL, and the resumed study draws what an uninterrupted one would
    assert any(t.state == TrialState.FAIL for t in resumed.trials)
    assert [t.params for t in finished] == [
        t.params for t in uninterrupted.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    ]
    assert resumed.best_params == uninterrupted.best_params


def test_shadow_screen_keeps_signal_and_drops_noise():
    rng = np.random.default_rng(11)
    n = 6000
    x = rng.standard_normal((n, 8))
    # label from the first two columns (a strong and a weaker driver); columns 2..7 are pure noise
    logit = -2.5 + 1.5 * x[:, 0] + 0.6 * x[:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    names = ["strong", "weak", *(f"noise_{k}" for k in range(6))]
    frame = pd.DataFrame(x, columns=names).assign(label=y)
    data = TaskData(frames={"train": frame}, features=names, directions={"strong": 1})
    kept, rate = shadow_screen(data, TuneParams(screen_repeats=3, screen_rounds=60), seed=7)
    assert kept == ["strong", "weak"]
    assert all(rate[f"noise_{k}"] <= 0.5 for k in range(6))
    # deterministic, and switched off by screen_repeats = 0
    assert shadow_screen(data, TuneParams(screen_repeats=3, screen_rounds=60), seed=7) == (kept, rate)
    assert shadow_screen(data, TuneParams(screen_repeats=0), seed=7)[0] == names
    # a column forced in (limit's line treatment) is kept even when it carries no signal
    kept2, _ = shadow_screen(
        data, TuneParams(screen_repeats=3, screen_rounds=60), seed=7, keep_always=("noise_0",)
    )
    assert kept2 == ["strong", "weak", "noise_0"]


def test_shadow_screen_drops_customer_level_noise_in_panel_data():
    # 600 customers x 12 monthly rows; a strong customer-level random effect drives the label, so a noise
    # column constant per customer can memorise customers: only a customer-permuted shadow is a fair bar
    rng = np.random.default_rng(5)
    n_c, k = 600, 12
    cust = np.repeat(np.arange(n_c), k)
    effect = np.repeat(rng.normal(0, 1.5, n_c), k)
    driver = rng.standard_normal(n_c * k)
    y = (rng.random(n_c * k) < 1 / (1 + np.exp(-(-1.5 + effect + 1.0 * driver)))).astype(float)
    frame = pd.DataFrame(
        {"driver": driver, "noise": np.repeat(rng.standard_normal(n_c), k), "customer_id": cust, "label": y}
    )
    tune = TuneParams(screen_repeats=3, screen_rounds=100)
    data = TaskData(frames={"train": frame}, features=["driver", "noise"])
    kept, rate = shadow_screen(data, tune, seed=3)
    assert kept == ["driver"] and rate["noise"] <= 0.5
    # the same data seen as independent rows (no customer_id): the noise column memorises customers and passes
    rows = TaskData(frames={"train": frame.drop(columns="customer_id")}, features=["driver", "noise"])
    assert "noise" in shadow_screen(rows, tune, seed=3)[0]

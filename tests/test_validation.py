"""Tests of the credit validation pack on a simulated world whose true PD (the oracle) is known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cardlab.modeling import metrics as M
from cardlab.modeling.validation import roc_points, validation_pack

FEATURES = ["f_util", "f_tenure", "f_orders", "f_late"]


def _world(seed: int = 0, n_per_month: int = 1_500) -> dict[str, pd.DataFrame]:
    """Logistic world, 12 snapshot months: train Jan–Jun, valid Jul–Aug, oot Sep–Dec (with a mild drift).

    pd_true is the oracle; 'pd' a noisy, slightly mis-calibrated model; 'pd_bureau' a weak one-feature baseline.
    """
    rng = np.random.default_rng(seed)
    months = pd.date_range("2023-01-01", periods=12, freq="MS")
    split_of = {
        **{m: "train" for m in months[:6]},
        **{m: "valid" for m in months[6:8]},
        **{m: "oot" for m in months[8:]},
    }
    rows = []
    for i, m in enumerate(months):
        drift = 0.06 * max(i - 7, 0)  # utilisation creeps up out of time
        x = rng.normal(size=(n_per_month, 4))
        x[:, 0] += drift
        logit = -3.0 + x @ np.array([0.9, -0.5, -0.3, 0.6])
        pd_true = 1 / (1 + np.exp(-logit))
        y = (rng.random(n_per_month) < pd_true).astype(np.int8)
        pd_model = 1 / (1 + np.exp(-(0.9 * logit - 0.25 + 0.7 * rng.normal(size=n_per_month))))
        pd_bureau = 1 / (1 + np.exp(-(-3.0 + 0.9 * x[:, 0])))
        df = pd.DataFrame(x, columns=FEATURES)
        df.insert(0, "snapshot_month", m)
        df["label"] = y
        df["pd"] = pd_model
        df["pd_true"] = pd_true
        df["pd_bureau"] = pd_bureau
        df["split"] = split_of[m]
        rows.append(df)
    full = pd.concat(rows, ignore_index=True)
    return {s: g.drop(columns="split").reset_index(drop=True) for s, g in full.groupby("split", sort=False)}


@pytest.fixture(scope="module")
def world():
    return _world()


def _run(frames, out, **kw):
    args = dict(
        score_col="pd",
        label_col="label",
        month_col="snapshot_month",
        oracle_col="pd_true",
        baseline_cols={"bureau": "pd_bureau"},
        features=FEATURES,
        out_dir=out,
        n_boot=100,
        seed=3,
        n_grades=8,
    )
    args.update(kw)
    return validation_pack(frames, **args)


@pytest.fixture(scope="module")
def pack(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("pack_a")
    return out, _run(world, out)


EXPECTED_FILES = [
    "roc_oot.png",
    "reliability_oot.png",
    "score_distribution.png",
    "gains_oot.png",
    "psi_by_month.png",
    "plots/roc_oot.csv",
    "plots/calibration.csv",
    "plots/gains.csv",
    "plots/psi_by_month.csv",
    "gains_table_oot.csv",
    "master_scale.csv",
    "jeffreys_by_grade.csv",
    "csi.csv",
]


def test_files_exist(pack):
    out, _ = pack
    for f in EXPECTED_FILES:
        p = out / f
        assert p.is_file() and p.stat().st_size > 0, f
    assert (out / "roc_oot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    roc = pd.read_csv(out / "plots" / "roc_oot.csv")
    assert list(roc.columns) == ["fpr", "tpr", "model"]
    assert set(roc["model"]) == {"model", "oracle", "bureau"}
    assert {"mean_pred", "obs_rate", "n"} <= set(pd.read_csv(out / "plots" / "calibration.csv").columns)
    psi_m = pd.read_csv(out / "plots" / "psi_by_month.csv")
    assert len(psi_m) == 12 and {"month", "psi"} <= set(psi_m.columns)
    csi = pd.read_csv(out / "csi.csv")
    assert set(csi["feature"]) == set(FEATURES)
    jt = pd.read_csv(out / "jeffreys_by_grade.csv")
    assert {"grade", "pd_grade", "n", "defaults", "p_value", "rejected"} <= set(jt.columns)


def test_keys_present_and_json_serialisable(pack, world):
    _, res = pack
    for s in world:
        for k in ("auc", "ks", "gini", "brier", "bad_rate", "n"):
            assert f"{s}_{k}" in res, f"{s}_{k}"
    for k in [
        "oot_auc_ci_lo",
        "oot_auc_ci_hi",
        "oot_oracle_auc",
        "oot_oracle_ks",
        "oot_oracle_brier",
        "bureau_oot_auc",
        "oot_psi",
        "oot_hosmer_lemeshow_p",
        "delong_vs_bureau_p",
        "jeffreys_grades_rejected",
    ]:
        assert k in res, k
    for k, v in res.items():
        assert v is None or type(v) in (int, float), (k, type(v))
    assert isinstance(res["oot_n"], int) and isinstance(res["jeffreys_grades_rejected"], int)
    json.loads(json.dumps(res, allow_nan=False))
    assert res["oot_n"] == len(world["oot"])


def test_oracle_bounds_model(pack, world):
    """The Bayes-optimal PD on the same rows beats a noisy model; the model beats a weak baseline."""
    _, res = pack
    assert res["oot_oracle_auc"] >= res["oot_auc"]
    assert res["oot_oracle_brier"] <= res["oot_brier"]
    assert res["oot_oracle_ks"] >= res["oot_ks"]
    assert res["oot_auc"] > res["bureau_oot_auc"]
    assert res["delong_vs_bureau_p"] < 0.01
    assert res["oot_auc_ci_lo"] < res["oot_auc"] < res["oot_auc_ci_hi"]
    # numbers are those of the metric functions on the same rows
    oot = world["oot"]
    assert res["oot_auc"] == pytest.approx(M.auc(oot["label"], oot["pd"]))
    assert res["oot_bad_rate"] == pytest.approx(oot["label"].mean())


def test_stability_and_calibration_signals(pack):
    out, res = pack
    # the drifted feature has the largest CSI, the untouched ones are stable
    csi = pd.read_csv(out / "csi.csv").set_index("feature")["csi_oot"]
    assert csi.idxmax() == "f_util" and csi.drop("f_util").max() < 0.01
    # the model is mis-calibrated (scaled logit, shifted intercept): HL and Jeffreys see it
    assert res["oot_hosmer_lemeshow_p"] < 0.05
    assert 0.0 <= res["oot_psi"] < 0.25
    assert res["jeffreys_grades_rejected"] >= 1


def test_calibrated_oracle_as_model_passes_back_tests(world, tmp_path):
    """With the true PD as the 'model', HL is not rejected and few grades fail Jeffreys."""
    frames = {s: df.assign(pd=df["pd_true"]) for s, df in world.items()}
    res = _run(frames, tmp_path, baseline_cols={}, features=None, n_boot=20)
    assert res["oot_hosmer_lemeshow_p"] > 0.01
    assert res["jeffreys_grades_rejected"] <= 1


def test_reproducible_bytes(pack, world, tmp_path):
    out_a, res_a = pack
    res_b = _run(world, tmp_path)
    assert res_a == res_b
    for f in EXPECTED_FILES:
        if f.endswith(".csv"):
            assert (out_a / f).read_bytes() == (tmp_path / f).read_bytes(), f
    for f in EXPECTED_FILES:
        if f.endswith(".png"):
            assert (out_a / f).read_bytes() == (tmp_path / f).read_bytes(), f


def test_roc_points_exact_step_function():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.random(500) + 0.3 * y, 2)
    fpr_s, tpr_s, _ = roc_curve(y, p, drop_intermediate=False)
    grid, tpr = roc_points(y, p)
    for f, t in zip(grid, tpr, strict=True):
        assert t == pytest.approx(tpr_s[fpr_s <= f + 1e-12].max())


def test_missing_split_or_column_raises(world, tmp_path):
    with pytest.raises(ValueError):
        _run({"train": world["train"]}, tmp_path)
    with pytest.raises(ValueError):
        _run(world, tmp_path, baseline_cols={"x": "no_such_col"})

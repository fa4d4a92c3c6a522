"""params.yaml is validated by one schema; errors name the key and nothing is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cardlab.cli import app
from cardlab.config import ParamsError, apply_overrides, load_params, params_hash, parse_params

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_yaml_is_valid():
    p = load_params(REPO / "params.yaml")
    assert p.simulate.preset in p.simulate.presets


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"simulate": {"workers": "two"}}, "simulate.workers"),
        ({"simulate": {"workers": 0}}, "simulate.workers"),
        ({"simulate": {"sead": 3}}, "simulate.sead"),
        ({"tune": {"n_trials": -1}}, "tune.n_trials"),
        ({"credit": {"min_oot_auc": 1.5}}, "credit.min_oot_auc"),
        ({"bogus_section": {}}, "bogus_section"),
        ({"simulate": {"preset": "huge"}}, "simulate.preset"),
    ],
)
def test_bad_params_name_the_key(raw, key):
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert key in str(err.value)


def test_unknown_key_message_says_unknown():
    with pytest.raises(ParamsError, match="unknown key"):
        parse_params({"features": {"windowz": [1]}})


def test_search_space_bounds_checked():
    with pytest.raises(ParamsError, match="max_depth"):
        parse_params({"tune": {"search_space": {"max_depth": [6, 2]}}})


def test_overrides_apply_and_validate(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    assert load_params(path, ["simulate.seed=11"]).simulate.seed == 11
    with pytest.raises(ParamsError, match="simulate.seed"):
        load_params(path, ["simulate.seed=minus"])
    with pytest.raises(ParamsError, match="KEY=VALUE"):
        load_params(path, ["simulate.seed"])


def test_override_errors_name_the_override_and_suggest_the_key():
    with pytest.raises(ParamsError) as err:
        load_params(REPO / "params.yaml", ["simulate.seed=2", "tune.n_trial=5"])
    assert str(err.value) == "--set tune.n_trial=5: tune.n_trial: unknown key; did you mean 'n_trials'?"
    with pytest.raises(
        ParamsError, match=r"^--set tune\.search_space\.max_depth=\[6, 2\]: tune\.search_space"
    ):
        load_params(REPO / "params.yaml", ["tune.search_space.max_depth=[6, 2]"])
    with pytest.raises(ParamsError, match=r"^--set tune.n_trials.x=1: tune.n_trials is a value"):
        load_params(REPO / "params.yaml", ["tune.n_trials.x=1"])


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        ({"tune": {"n_trial": 5}}, "tune.n_trial: unknown key; did you mean 'n_trials'?"),
        ({"tunee": {}}, "tunee: unknown key; did you mean 'tune'?"),
        (
            {"simulate": {"economics": {"aprr": 0.2}}},
            "simulate.economics.aprr: unknown key; did you mean 'apr'?",
        ),
        ({"simulate": {"presets": {"ci": {"n_customers": 5, "shardsize": 5}}}}, "did you mean 'shard_size'?"),
        ({"explain": {"zzz": 1}}, "explain.zzz: unknown key; allowed: approval_rate, "),
    ],
)
def test_unknown_keys_suggest_the_closest_key(raw, hint):
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert hint in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("# only a comment\n", "the file is empty"),
        ("simulate: {seed: 3}\n", "missing section(s) features, tune, credit"),
        ("- a\n- b\n", "top level must be a mapping"),
    ],
)
def test_empty_or_sectionless_params_file_is_an_error(tmp_path, text, message):
    """Built-in defaults are never used silently (issue 20: an empty file ran with tune.n_trials = 20)."""
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert message in str(err.value)
    res = CliRunner().invoke(app, ["check-params", "--params", str(path)])
    assert res.exit_code == 2 and message in res.output


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("simulate: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_set_value_that_yaml_cannot_read():
    # a scanner error carries .problem; a ReaderError (a control character) does not: both are ParamsError
    with pytest.raises(ParamsError, match=r"^--set tune.n_trials=\[: the value is not valid YAML"):
        apply_overrides({}, ["tune.n_trials=["])
    with pytest.raises(ParamsError, match=r"the value is not valid YAML \(unacceptable character"):
        apply_overrides({}, ["tune.n_trials=\x01"])


def test_params_hash_changes_with_values():
    a = parse_params({}).simulate
    b = parse_params({"simulate": {"seed": 8}}).simulate
    assert params_hash(a) != params_hash(b)
    assert params_hash(a) == params_hash(parse_params({}).simulate)


def test_cli_bad_params_exit_2_and_outputs_intact(tmp_path):
    """A wrong type stops `cardlab simulate` before it touches the previous outputs."""
    out = tmp_path / "data"
    (out / "raw").mkdir(parents=True)
    sentinel = out / "raw" / "keep.txt"
    sentinel.write_text("earlier output")
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    cfg = yaml.safe_load(params.read_text())
    cfg["simulate"]["workers"] = "many"
    params.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["simulate", "--params", str(params), "--out", str(out)])
    assert res.exit_code == 2
    assert "simulate.workers" in res.output
    assert sentinel.read_text() == "earlier output"


def test_cli_help_lists_stage_verbs():
    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0
    for verb in ("simulate", "features", "tune", "train", "evaluate", "promote"):
        assert verb in res.output

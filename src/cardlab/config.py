"""The one typed schema of params.yaml.

Every stage loads params.yaml through :func:`load_params` and receives only its own slice
(``params.simulate``, ``params.features``, ...). Unknown keys, wrong types and out-of-range values stop
the stage with a :class:`ParamsError` whose message names the offending key, e.g.
``params.yaml: simulate.workers: Input should be greater than or equal to 1 (got 0)``.

Sections are owned by the stage that reads them; DVC stages list exactly those keys in ``params:``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import typing
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cardlab.errors import CardlabError


def repo_root() -> Path:
    """The repository root: ``CARDLAB_ROOT`` if set, else the nearest folder above cwd with dvc.yaml."""
    env = os.environ.get("CARDLAB_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for cand in (here, *here.parents):
        if (cand / "dvc.yaml").exists() or (cand / "pyproject.toml").exists():
            return cand
    return here


PRESETS = ("ci", "dev", "bench")

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]


class ParamsError(CardlabError, ValueError):
    """params.yaml (or an override) is invalid; the message names the key and what would be right."""


class StrictModel(BaseModel):
    """Base for every params section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# ---------------------------------------------------------------------------------------------------------
# simulate: the synthetic world
# ---------------------------------------------------------------------------------------------------------
class PresetSize(StrictModel):
    """Size of one world preset."""

    n_customers: PositiveInt
    months: Annotated[int, Field(ge=24, le=60)] = 36
    shard_size: PositiveInt = 10_000


class EconomicsParams(StrictModel):
    """Unit economics of the card, shared by the simulator (statement interest/fees) and by downstream tasks
    (limit profit, campaign value). Rates are fractions; annual rates are converted to monthly as rate / 12."""

    interchange_rate: Annotated[float, Field(ge=0, le=0.05)] = 0.006  # bank share of spend (fraction)
    apr: Annotated[float, Field(ge=0, le=1)] = 0.1825  # annual interest on revolving balance (0.05 %/day)
    funding_rate_annual: Annotated[float, Field(ge=0, le=1)] = 0.03  # cost of funds on drawn balance
    reward_rate: Annotated[float, Field(ge=0, le=0.05)] = 0.005  # points cost on all card spend
    platform_reward_bonus: Annotated[float, Field(ge=0, le=0.05)] = 0.01  # extra points on platform spend
    lgd: Probability = 0.85  # loss given default (fraction of exposure at default)
    late_fee_rate: Annotated[float, Field(ge=0, le=0.2)] = 0.05  # of the unpaid minimum due
    cash_advance_fee_rate: Annotated[float, Field(ge=0, le=0.1)] = 0.01  # of the cash advanced
    min_due_rate: Annotated[float, Field(gt=0, le=1)] = 0.10  # minimum payment as share of balance
    min_due_floor_fen: Annotated[int, Field(ge=0)] = 10_000  # minimum payment floor (100 yuan)
    # the bank's operating cost (servicing, collections, marketing) per year as a share of receivables; only the
    # book's return on receivables uses it (realism report), no decision depends on it
    operating_cost_rate: Annotated[float, Field(ge=0, le=0.2)] = 0.03


class SimulateParams(StrictModel):
    """Knobs of the world simulator (``cardlab simulate``)."""

    preset: Literal["ci", "dev", "bench"] = "ci"
    seed: Annotated[int, Field(ge=0)] = 7
    workers: PositiveInt = 2
    start_month: date = date(2023, 1, 1)
    presets: dict[str, PresetSize] = Field(
        default_factory=lambda: {
            "ci": PresetSize(n_customers=20_000, months=48, shard_size=10_000),
            "dev": PresetSize(n_customers=200_000, months=48, shard_size=25_000),
            "bench": PresetSize(n_customers=1_000_000, months=24, shard_size=50_000),
        }
    )
    # signal-to-noise of observables about the latent traits: higher -> a better Bayes-optimal model
    signal_to_noise: Annotated[float, Field(gt=0.0, le=10.0)] = 1.0
    # macro shock: months after start_month when stress rises, and how much (multiplier on default hazard)
    shock_month: Annotated[int, Field(ge=1)] = 30
    shock_size: Annotated[float, Field(ge=1.0, le=5.0)] = 1.6
    # share of invited applicants routed to the randomised initial-limit test cell
    limit_test_cell_share: Probability = 0.15
    # share of reviewed accounts routed to the randomised line-increase cells
    review_test_cell_share: Probability = 0.2
    # retention campaign: share of eligible accounts held out as a random control group
    retention_control_share: Probability = 0.3
    n_decoys: Annotated[int, Field(ge=0, le=20)] = 3
    # validate every raw shard against its pandera schema before writing (slower on large presets)
    validate_schemas: bool = True
    economics: EconomicsParams = Field(default_factory=EconomicsParams)

    @model_validator(mode="after")
    def _preset_known(self) -> SimulateParams:
        if self.preset not in self.presets:
            raise ValueError(f"preset {self.preset!r} is not among presets {sorted(self.presets)}")
        return self

    @property
    def size(self) -> PresetSize:
        return self.presets[self.preset]


# ---------------------------------------------------------------------------------------------------------
# features: snapshot datasets
# ---------------------------------------------------------------------------------------------------------
class SplitParams(StrictModel):
    """Time split of snapshot rows, in months after the world's start month (0-based).

    ``train`` = snapshot months < valid_start; ``valid`` = [valid_start, oot_start - gap_months);
    ``oot`` = [oot_start, oot_end]. The ``gap_months`` before the first OOT month hold no rows: a valid row's
    label (or any outcome a fitted object reads) runs ``FeaturesParams.label_span_months(task)`` months past
    its snapshot month, so the gap must be at least that long for every train/valid label to close before the
    first OOT month (no look-ahead by construction; :class:`FeaturesParams` rejects a shorter gap). Rows after
    ``oot_end`` are dropped (their outcome window is not complete).
    """

    valid_start: Annotated[int, Field(ge=1)] = 20
    gap_months: Annotated[int, Field(ge=0)] = 3
    oot_start: Annotated[int, Field(ge=2)] = 32
    oot_end: Annotated[int, Field(ge=3)] = 44

    @property
    def valid_end(self) -> int:
        """First snapshot month after the valid split (exclusive end)."""
        return self.oot_start - self.gap_months

    @model_validator(mode="after")
    def _ordered(self) -> SplitParams:
        if not self.valid_start < self.oot_start <= self.oot_end:
            raise ValueError("need valid_start < oot_start <= oot_end")
        if not self.valid_start < self.valid_end:
            raise ValueError(
                f"the valid split [valid_start {self.valid_start}, oot_start - gap_months = {self.valid_end}) is "
                "empty: lower valid_start or gap_months, or raise oot_start"
            )
        return self


class FeaturesParams(StrictModel):
    windows: list[PositiveInt] = Field(default_factory=lambda: [1, 3, 6, 12])
    # credit label: 90+ DPD within this many statements after booking (the oracle's pd_12m covers 12)
    credit_horizon_months: PositiveInt = 12
    churn_gap_months: Annotated[int, Field(ge=0)] = 1
    churn_horizon_months: PositiveInt = 3
    silent_months: PositiveInt = 3
    # limit: realised outcomes over this many statement months after the decision; label (90+ DPD) only when at
    # least limit_min_outcome_months of them lie inside the world (reviews after the shock have < 12 months)
    limit_outcome_months: PositiveInt = 12
    limit_min_outcome_months: PositiveInt = 6
    # churn (and the fallback for the other tasks), 48-month world with the macro shock from month 30: OOT from
    # month 32 to the last month whose 1-month gap + 3-month label window fits (44); valid ends 3 months before
    # OOT (the label's reach)
    split: SplitParams = Field(default_factory=SplitParams)
    # credit: labels reach 12 statements past booking, so valid ends 12 months before OOT; OOT ends at the
    # last application month whose 12 statements fit in a 48-month world (35)
    credit_split: SplitParams = Field(
        default_factory=lambda: SplitParams(valid_start=14, gap_months=12, oot_start=30, oot_end=35)
    )
    # limit: OOT in the shock, ending where >= limit_min_outcome_months of outcomes remain (41); valid ends 12
    # months before OOT (the outcome window)
    limit_split: SplitParams = Field(
        default_factory=lambda: SplitParams(valid_start=16, gap_months=12, oot_start=34, oot_end=41)
    )

    @model_validator(mode="after")
    def _windows(self) -> FeaturesParams:
        if len(set(self.windows)) != len(self.windows):
            raise ValueError(f"windows must be distinct, got {self.windows}")
        if self.limit_min_outcome_months > self.limit_outcome_months:
            raise ValueError("limit_min_outcome_months must not exceed limit_outcome_months")
        for task, key in (("credit", "credit_split"), ("limit", "limit_split"), ("churn", "split")):
            sp, span = self.split_for(task), self.label_span_months(task)
            if sp.gap_months < span:
                raise ValueError(
                    f"{key}.gap_months = {sp.gap_months} lets {task} labels look ahead: a valid row of month "
                    f"{sp.valid_end - 1} reads outcomes up to month {sp.valid_end - 1 + span}, at or after the "
                    f"first OOT month {sp.oot_start}. Set {key}.gap_months >= {span} (the {task} label span), "
                    f"so that the last valid month is at most {sp.oot_start - span - 1} (valid_start < that + 1)"
                )
        return self

    def split_for(self, task: str) -> SplitParams:
        return {"credit": self.credit_split, "limit": self.limit_split}.get(task, self.split)

    def label_span_months(self, task: str) -> int:
        """Months from a snapshot's month index ``t`` to the last statement month its label, or any outcome
        the task fits on, reads: credit ``t + credit_horizon_months`` (booked in month t, statements t+1 ..
        t+h), limit ``t + limit_outcome_months`` (decision in month t, outcomes from t+1), churn
        ``t + churn_gap_months + churn_horizon_months - 1``. The churn value model's realised margin is cut
        at the first OOT month instead (tasks/churn.py)."""
        spans = {
            "credit": self.credit_horizon_months,
            "limit": self.limit_outcome_months,
            "churn": self.churn_gap_months + self.churn_horizon_months - 1,
        }
        if task not in spans:
            raise ValueError(f"unknown task {task!r}: expected one of {sorted(spans)}")
        return spans[task]


# ---------------------------------------------------------------------------------------------------------
# modelling: tuning and training shared by the three tasks
# ---------------------------------------------------------------------------------------------------------
class SearchSpace(StrictModel):
    max_depth: tuple[int, int] = (2, 6)
    learning_rate: tuple[float, float] = (0.02, 0.3)
    min_child_weight: tuple[float, float] = (1.0, 50.0)
    subsample: tuple[float, float] = (0.6, 1.0)
    colsample_bytree: tuple[float, float] = (0.5, 1.0)
    reg_lambda: tuple[float, float] = (0.1, 20.0)

    @model_validator(mode="after")
    def _ranges(self) -> SearchSpace:
        for name, (lo, hi) in self.model_dump().items():
            if lo > hi:
                raise ValueError(f"{name}: lower bound {lo} exceeds upper bound {hi}")
        return self


class TuneParams(StrictModel):
    # trials per study: credit and churn run one study, limit one per response model (tasks/limit, MODELS), so
    # limit's tuning costs three times this budget. No wall-clock budget: with one the tuned result would depend
    # on the machine's speed, not only on params and seed.
    n_trials: PositiveInt = 20
    # the modelling seed: shadow screen, Optuna's sampler and the bootstraps of a model's own grades, separate
    # from simulate.seed (the world's), so the same world can be modelled with several seeds and vice versa
    seed: int = 7
    num_boost_round: PositiveInt = 400
    early_stopping_rounds: PositiveInt = 30
    # None -> a journal file experiments/<task>/optuna.journal; any RDB URL (sqlite:///...) works too
    storage: str | None = None
    search_space: SearchSpace = Field(default_factory=SearchSpace)
    nthread: PositiveInt = 2
    # shadow-feature screening before tuning (modeling/screen.py): repeats (0 = off) and boosting rounds each
    screen_repeats: Annotated[int, Field(ge=0, le=50)] = 6
    screen_rounds: PositiveInt = 100
    screen_min_pass: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0  # share of repeats a feature must pass
    # trials drawn together and run at once (on the engine's workers): 1 = the sequential study; the tuned
    # result depends on this number (batch-synchronous TPE, docs/scale.md), never on the workers' count
    parallel_trials: Annotated[int, Field(ge=1, le=64)] = 1


class CreditParams(StrictModel):
    # score scale: base_points at base_odds (good:bad), pdo points to double the odds
    base_points: float = 600.0
    base_odds: Annotated[float, Field(gt=0)] = 50.0
    pdo: Annotated[float, Field(gt=0)] = 20.0
    n_grades: Annotated[int, Field(ge=3, le=30)] = 10
    bootstrap: Annotated[int, Field(ge=10)] = 200
    # challenger alias only when the monitoring plan (modeling/monitoring.py, with these limits) has no red
    # indicator on OOT, or each red one is waived here: {indicator: the reviewer's reason}
    min_oot_auc: Probability = 0.70
    max_oot_psi: Annotated[float, Field(gt=0)] = 0.25
    gate_waivers: dict[str, str] = Field(default_factory=dict)


class LimitParams(StrictModel):
    """Credit-limit allocation (docs/tasks/limit.md). Card terms (interchange, APR, rewards) come from
    ``simulate.economics``; the fields below are the bank's own planning assumptions and constraints."""

    # initial-line options at booking (yuan); must equal the world's grid for the oracle to grade them
    line_grid_yuan: list[PositiveInt] = Field(
        default_factory=lambda: [2_000, 5_000, 10_000, 20_000, 30_000, 50_000]
    )
    # line-review options: multiples of the current line (1.0 = no change), rounded to 100 yuan, capped
    review_multiples: list[Annotated[float, Field(gt=0, le=5)]] = Field(
        default_factory=lambda: [1.0, 1.25, 1.5, 2.0]
    )
    max_line_yuan: PositiveInt = 100_000
    # portfolio constraints, as shares of the legacy policy's total line / expected loss on the same rows
    exposure_budget_share: Annotated[float, Field(gt=0, le=2.0)] = 1.0
    expected_loss_cap_share: Annotated[float, Field(gt=0, le=2.0)] = 1.0
    lgd: Probability = 0.85
    funding_rate_annual: Annotated[float, Field(ge=0, le=1)] = 0.03
    # exposure at default as a share of the line (distressed borrowers draw the line down before defaulting)
    ead_line_share: Annotated[float, Field(gt=0, le=1.5)] = 0.95
    # share of card spend made on the platform (earns the extra platform reward points)
    platform_spend_share: Probability = 0.45
    # training weight of randomised test-cell rows relative to legacy rows (they identify the line effect)
    test_cell_weight: Annotated[float, Field(gt=0, le=100)] = 1.0
    # revolving-balance response: "utilisation" models balance / line (log-line offset, utilisation
    # non-increasing in the line), "balance" models the balance itself (line effect learnt from scratch)
    revolve_model: Literal["utilisation", "balance"] = "utilisation"
    # pooled log-line slope of the default logit, estimated on the randomised test cells (else none)
    estimate_pd_line_slope: bool = True
    # the PD intercept is recalibrated on the valid split's latest N decision months (0 = off)
    pd_recalibration_months: Annotated[int, Field(ge=0, le=24)] = 3
    # challenger alias only if the oracle expected loss of the policy is within cap * (1 + tolerance)
    # and profit_capture > 0
    expected_loss_tolerance: Annotated[float, Field(ge=0, le=1)] = 0.05
    # the registered PD model is challenger only when the policy checks hold and the monitoring plan (with
    # credit.max_oot_psi / min_oot_auc) has no red indicator on OOT, or each red one is waived here
    gate_waivers: dict[str, str] = Field(default_factory=dict)
    # exposure-budget shares of the profit frontier plot
    frontier_budget_shares: list[Annotated[float, Field(gt=0, le=2.0)]] = Field(
        default_factory=lambda: [0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4]
    )
    n_risk_grades: Annotated[int, Field(ge=2, le=20)] = 5
    solver_time_limit_s: Annotated[float, Field(gt=0, le=3600)] = 30.0


UpliftLearner = Literal["t_learner", "x_learner", "dr_learner"]


class ChurnParams(StrictModel):
    """Churn early warning, customer value and retention uplift (``cardlab tune|train|evaluate churn``);
    definitions in docs/tasks/churn.md."""

    # campaign capacity: share of the scored population (or of the campaign-eligible rows) that can be contacted
    campaign_capacity_share: Probability = 0.1
    offer_cost_yuan: Annotated[float, Field(ge=0)] = 50.0
    # customer value: realised margin over this many statement months from the snapshot month, annualised
    # (x 12 / months observed) when at least value_min_months of them lie inside the world
    value_horizon_months: Annotated[int, Field(ge=3, le=24)] = 12
    value_min_months: Annotated[int, Field(ge=1, le=24)] = 6
    value_num_boost_round: PositiveInt = 300
    # uplift learners fitted on the randomised campaign rows (train split), selected on the valid split
    uplift_learners: list[UpliftLearner] = Field(
        default_factory=lambda: list[UpliftLearner](["t_learner", "x_learner", "dr_learner"])
    )
    # the reported uplift: "ensemble" = the mean of the learners' CATE estimates; or the learner a validation
    # score picks (all learners are reported and graded either way, and so is what each score would pick)
    uplift_selection: Literal["ensemble", "dr_score", "r_loss", "qini"] = "ensemble"
    # heavily regularised base models: the campaign is small and the true effect is a few points of churn
    # probability, so unshrunk learners mostly fit outcome noise (docs/tasks/churn.md)
    uplift_max_depth: Annotated[int, Field(ge=1, le=8)] = 2
    uplift_learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.02
    uplift_num_boost_round: PositiveInt = 100
    uplift_min_child_weight: Annotated[float, Field(ge=0)] = 100.0
    uplift_reg_lambda: Annotated[float, Field(ge=0)] = 50.0
    uplift_folds: Annotated[int, Field(ge=2, le=10)] = 3
    # challenger alias only when these hold on OOT
    min_oot_auc: Probability = 0.65
    min_lift_at_capacity: Annotated[float, Field(ge=0)] = 1.5

    @model_validator(mode="after")
    def _value_window(self) -> ChurnParams:
        if self.value_min_months > self.value_horizon_months:
            raise ValueError("value_min_months must not exceed value_horizon_months")
        if not self.uplift_learners:
            raise ValueError("uplift_learners must name at least one learner")
        return self


# ---------------------------------------------------------------------------------------------------------
# report: portfolio operations (lifecycle KPIs, vintage / roll-rate, campaign evaluation)
# ---------------------------------------------------------------------------------------------------------
class ReportParams(StrictModel):
    """Knobs of the portfolio report (``cardlab report``); definitions are in docs/portfolio.md.

    The world's unit economics (margin per account) and retention design (control share) are read from the
    world's manifest, not from here."""

    # activation windows after card open, in days
    activation_windows_days: list[PositiveInt] = Field(default_factory=lambda: [30, 90])
    # an open card is dormant after this many consecutive months without purchases or cash advances
    dormant_months: PositiveInt = 6
    # ... and "silent" (the long-dormant share reported separately) after this many
    silent_months: PositiveInt = 18
    # booking vintage granularity for KPI cuts and vintage curves
    vintage_granularity: Literal["month", "quarter"] = "quarter"
    # vintage curves are drawn up to this many months on book
    vintage_max_mob: Annotated[int, Field(ge=3, le=60)] = 24
    # horizon of the credit task's bad definition being justified (ever 90+ DPD within this many months)
    bad_horizon_months: PositiveInt = 12
    # campaign evaluation: interval level
    ci_level: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    # churn outcome: voluntary closure in the months after the campaign month (the offer's effect window) ...
    churn_horizon_months: PositiveInt = 3
    # ... or silence: no purchases / cash advances in this many consecutive statement months from the end of
    # that window (the length of features.silent_months)
    churn_silent_months: PositiveInt = 3
    # CUPED covariate: purchases over this many months before the campaign month
    cuped_pre_months: PositiveInt = 3
    # cost of one retention offer (yuan); keep equal to churn.offer_cost_yuan
    offer_cost_yuan: Annotated[float, Field(ge=0)] = 50.0
    # how many months of margin a retained account is worth in the incremental-ROI numerator
    retained_value_months: PositiveInt = 12
    # designed share of each retention arm among eligible accounts (control, random, targeted); None -> the
    # world's design: control = simulate.retention_control_share from the manifest, the rest split equally
    design_arm_shares: dict[Literal["control", "random", "targeted"], Probability] | None = None
    # SRM alarm threshold on the chi-square p-value
    srm_alpha: Probability = 0.001


# ---------------------------------------------------------------------------------------------------------
# explain: SHAP explanations, reason codes and the model report (owned by ``cardlab explain``)
# ---------------------------------------------------------------------------------------------------------
class ExplainParams(StrictModel):
    """Knobs of the explanation stage (``cardlab explain <task>``); definitions are in docs/explain.md."""

    # OOT rows explained for the global importance, beeswarm and dependence plots (all when fewer)
    global_sample: PositiveInt = 5_000
    # reason codes: factors per declined / flagged decision, and features grouped under one reason
    top_reasons: Annotated[int, Field(ge=1, le=10)] = 4
    group_corr_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    # credit cutoff: approve the lowest-PD share; None -> the bank's observed approval rate on OOT applications
    approval_rate: Probability | None = None
    # churn/limit: share of accounts flagged for a decision (top scores) when their task sets none
    flag_share: Probability = 0.1
    # dependence plots for the top features
    n_dependence: Annotated[int, Field(ge=1, le=12)] = 6
    # stability of reasons: refits on bootstrap samples of train with the tuned params
    bootstrap_refits: Annotated[int, Field(ge=0, le=10)] = 3
    stability_rows: PositiveInt = 1_000
    # optional interventional SHAP against a background sample of the reference split (0 = off)
    interventional_rows: Annotated[int, Field(ge=0)] = 0
    background_rows: PositiveInt = 200
    reference_split: Literal["train", "valid", "oot"] = "train"
    seed: Annotated[int, Field(ge=0)] = 20240601


# ---------------------------------------------------------------------------------------------------------
# grading: observable ceilings, confidence bounds and the bars (read by every evaluate stage)
# ---------------------------------------------------------------------------------------------------------
class CeilingParams(StrictModel):
    """The observable ceiling (modeling/grading.py): an XGBoost learner fitted to the oracle's own probability
    (or true effect / expected profit) on the task's features, cross-fitted over customer folds. Fixed, moderate
    settings (no tuning); ``max_train_rows`` caps each fold's training rows (a seeded sample) so the dev and bench
    presets stay affordable; ``fractions`` are the learning-curve points (share of each fold's training
    customers) that show whether the ceiling has converged."""

    folds: Annotated[int, Field(ge=2, le=10)] = 3
    num_boost_round: Annotated[int, Field(ge=10, le=5000)] = 200
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    max_depth: Annotated[int, Field(ge=1, le=12)] = 5
    # with soft labels the hessian p(1 - p) is small: 5 is ~100 rows per leaf at a 5 % PD
    min_child_weight: Annotated[float, Field(ge=0.0)] = 5.0
    subsample: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    colsample_bytree: Annotated[float, Field(gt=0.0, le=1.0)] = 0.6
    # histogram bins per feature: 64 costs a fifth of XGBoost's 256 on small folds, at no measurable loss
    max_bin: Annotated[int, Field(ge=16, le=1024)] = 64
    max_train_rows: Annotated[int, Field(ge=1000)] = 100_000
    fractions: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(default_factory=lambda: [0.25, 0.5])


class CreditBars(StrictModel):
    oot_auc_ceiling_ratio: Probability = (
        0.97  # model OOT AUC / observable ceiling (lower bound must clear it)
    )
    screen_kept: Annotated[int, Field(ge=0)] = 10  # features the shadow screen keeps
    screen_kept_behavioural: Annotated[int, Field(ge=0)] = 5  # ... of which orders / sessions / BNPL


class LimitBars(StrictModel):
    profit_capture: Annotated[float, Field(ge=-10.0, le=10.0)] = 0.75  # OOT, oracle-graded
    # pre-shock (valid-split) decisions: the policy's and the oracle's true profit per account (yuan) exceed
    valid_policy_profit: float = 0.0
    valid_oracle_profit: float = 0.0


class ChurnBars(StrictModel):
    oot_auc_ceiling_ratio: Probability = 0.97
    qini_capture: Annotated[float, Field(ge=-10.0, le=10.0)] = 0.6


class ExplainBars(StrictModel):
    """Faithfulness bars, graded for every task (explain/faithfulness.py)."""

    shap_truth_spearman: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.6
    n_drivers_used: Annotated[int, Field(ge=0)] = 3


class BarsParams(StrictModel):
    credit: CreditBars = Field(default_factory=CreditBars)
    limit: LimitBars = Field(default_factory=LimitBars)
    churn: ChurnBars = Field(default_factory=ChurnBars)
    explain: ExplainBars = Field(default_factory=ExplainBars)


class GradingParams(StrictModel):
    """How every evaluate stage grades (docs/grading.md): a customer-clustered bootstrap with a fixed seed
    (``bootstrap`` replicates, intervals at ``ci_level``), the observable ceiling and the bars. A bar is
    *met* when the lower bound clears its threshold, *not met* when the upper bound is below it, else
    *inconclusive*."""

    bootstrap: Annotated[int, Field(ge=10, le=10_000)] = 200
    ci_level: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    seed: Annotated[int, Field(ge=0)] = 20240917
    ceiling: CeilingParams = Field(default_factory=CeilingParams)
    bars: BarsParams = Field(default_factory=BarsParams)


class EngineParams(StrictModel):
    """Where the heavy stages run (docs/scale.md). ``local``: this process and its own worker processes
    (the default). ``dask``: shards, feature partitions, trials and xgboost.dask training run as Dask tasks on
    the cluster at ``scheduler``, or on a ``LocalCluster`` of ``local_workers`` processes when it is null.
    Outputs of simulate and features are byte-identical under either engine.

    A section of its own, not a key of one stage's section: simulate, features, tune and train all read it,
    and none of their results may depend on it (``tune.parallel_trials`` is the one choice that changes a
    result, so it lives in ``tune``)."""

    kind: Literal["local", "dask"] = "local"
    # tcp://host:8786 of a running Dask scheduler; null = start a LocalCluster for the stage
    scheduler: str | None = None
    local_workers: Annotated[int, Field(ge=1, le=256)] = 2
    threads_per_worker: Annotated[int, Field(ge=1, le=64)] = 1
    # LocalCluster memory limit per worker (Dask spills, pauses and restarts a worker past it)
    memory_per_worker: str = "4GiB"
    # Dask task retries after a worker dies, and Optuna retries of a trial whose worker stopped heartbeating
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    # Optuna heartbeat of a running trial (RDB storage); a trial silent for 3 heartbeats is failed and retried
    heartbeat_s: Annotated[int, Field(ge=1, le=600)] = 10
    # train (engine dask): fit the final booster with xgboost.dask, its rows partitioned over the workers, for
    # data one worker cannot hold. Off by default: merged quantile sketches and distributed histogram sums make
    # the booster close to the local one, not equal, so model bytes (and dvc.lock) would change (docs/scale.md)
    distributed_training: bool = False


class TrackingParams(StrictModel):
    experiment_prefix: str = "cardlab"


class Params(StrictModel):
    """Root of params.yaml."""

    simulate: SimulateParams = Field(default_factory=SimulateParams)
    features: FeaturesParams = Field(default_factory=FeaturesParams)
    tune: TuneParams = Field(default_factory=TuneParams)
    credit: CreditParams = Field(default_factory=CreditParams)
    limit: LimitParams = Field(default_factory=LimitParams)
    churn: ChurnParams = Field(default_factory=ChurnParams)
    tracking: TrackingParams = Field(default_factory=TrackingParams)
    report: ReportParams = Field(default_factory=ReportParams)
    explain: ExplainParams = Field(default_factory=ExplainParams)
    grading: GradingParams = Field(default_factory=GradingParams)

    engine: EngineParams = Field(default_factory=EngineParams)


# ---------------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------------
def _field_model(annotation: Any) -> type[BaseModel] | None:
    """The params model inside a field's annotation (``X``, ``X | None``, ``dict[str, X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _field_model(arg)
        if found is not None:
            return found
    return None


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the mapping at ``loc`` (a path of keys from the root of params.yaml)."""
    model: type[BaseModel] | None = Params
    skip_dict_key = False
    for part in loc:
        if model is None:
            return []
        if skip_dict_key:  # the key of a dict-valued field (e.g. a preset name) names no field
            skip_dict_key = False
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        model = _field_model(field.annotation)
        skip_dict_key = typing.get_origin(field.annotation) is dict
    return sorted(model.model_fields) if model is not None and not skip_dict_key else []


def _unknown_key_message(loc: tuple[Any, ...]) -> str:
    allowed = _allowed_keys(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}" if allowed else ""
    return "unknown key" + (f"; {hint}" if hint else "")


def _source_of(loc: tuple[Any, ...], overrides: dict[tuple[str, ...], str], default: str) -> str:
    """The override (``--set k=v``) an error at ``loc`` comes from, else the params file."""
    key = tuple(str(p) for p in loc)
    for path, item in overrides.items():
        n = min(len(path), len(key))
        if path[:n] == key[:n]:
            return f"--set {item}"
    return default


def _format_validation_error(
    err: ValidationError, source: str, overrides: dict[tuple[str, ...], str] | None = None
) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        got = e.get("input")
        got_txt = "" if isinstance(got, dict) else f" (got {got!r})"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = _unknown_key_message(e["loc"])
            got_txt = ""
        lines.append(f"{_source_of(e['loc'], overrides or {}, source)}: {key}: {msg}{got_txt}")
    return "\n".join(lines)


def parse_params(
    raw: dict[str, Any] | None,
    source: str = "params.yaml",
    *,
    overrides: dict[tuple[str, ...], str] | None = None,
) -> Params:
    """Validate a raw params mapping (missing sections and keys take their defaults; use
    :func:`load_params` for a params file, where every section must be present). ``overrides`` maps the
    key paths set by ``--set`` to the override text, so that their errors name the override."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: top level must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_validation_error(err, source, overrides)) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (value parsed as YAML) to a raw params mapping."""
    raw = json.loads(json.dumps(raw, default=str))
    for item in overrides:
        if "=" not in item:
            raise ParamsError(f"--set {item}: expected KEY=VALUE, e.g. --set simulate.seed=11")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ParamsError(f"--set {item}: {key.strip()!r} is not a dotted key like tune.n_trials")
        node = raw
        for depth, p in enumerate(parts[:-1]):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                where = ".".join(parts[: depth + 1])
                raise ParamsError(f"--set {item}: {where} is a value, not a section (got {node!r})")
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            # only marked (scanner/parser) errors carry .problem; a ReaderError (e.g. a control character) does not
            problem = err.problem if isinstance(err, yaml.MarkedYAMLError) else err
            raise ParamsError(f"--set {item}: the value is not valid YAML ({problem})") from None
    return raw


SECTIONS = tuple(Params.model_fields)


def load_params(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Params:
    """Load and validate a params file, then apply ``--set`` overrides.

    The file must hold every section (``simulate``, ``features``, ...) as a mapping: an empty or partial file
    is an error, never a silent fall-back to built-in defaults. Errors name the file or the override."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: params file not found (run from the repo root or pass --params)")
    if path.is_dir():
        raise ParamsError(f"{path}: is a folder, expected the params YAML file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    except UnicodeDecodeError as err:
        raise ParamsError(f"{path}: not UTF-8 text ({err.reason})") from None
    source = str(path)
    if raw is None or raw == {}:
        raise ParamsError(
            f"{source}: the file is empty; it must hold the sections {', '.join(SECTIONS)} "
            "(start from the repository's params.yaml)"
        )
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: top level must be a mapping of sections, got {type(raw).__name__}")
    missing = [s for s in SECTIONS if s not in raw]
    if missing:
        raise ParamsError(
            f"{source}: missing section(s) {', '.join(missing)}; every section must be present "
            "(built-in defaults are never used silently; copy them from the repository's params.yaml)"
        )
    empty = [s for s in SECTIONS if raw.get(s) is None]
    if empty:
        raise ParamsError(f"{source}: section(s) {', '.join(empty)} are empty; give their keys")
    sets: dict[tuple[str, ...], str] = {}
    if overrides:
        raw = apply_overrides(raw, overrides)
        sets = {tuple(o.split("=", 1)[0].strip().split(".")): o for o in overrides}
    return parse_params(raw, source=source, overrides=sets)


def params_hash(section: BaseModel | dict[str, Any]) -> str:
    """Stable short hash of a params slice (used as an MLflow tag joining runs to params)."""
    data = section.model_dump(mode="json") if isinstance(section, BaseModel) else section
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]

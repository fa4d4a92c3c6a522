"""Credit-limit allocation: choose a line per limit decision to maximise the bank's expected 12-month profit
under portfolio constraints, graded against the oracle's potential outcomes (docs/tasks/limit.md).

Decisions (``data/features/limit``): the initial line at booking (options: ``line_grid_yuan``) and each
periodic review (options: the current line times ``review_multiples``, rounded to 100 yuan, capped at
``max_line_yuan``). Profit of a line over 12 months (yuan)::

    interchange * spend + APR * avg revolving - funding * (avg revolving + spend / 12)
    - (reward_rate + platform_bonus * platform_share) * spend - PD * LGD * EAD,   EAD = ead_line_share * line

Method: three monotone XGBoost response models (12-month spend, average revolving balance, 90+ DPD) are
S-learners with the line as treatment features (log line and log line ratio), tuned with Optuna on the
time-based validation split. The revolving model predicts utilisation (balance / line, a log-line offset,
non-increasing in the line); the default model gets a pooled log-line slope estimated on the randomised test
cells and an intercept recalibrated on the latest validation months; every response is made non-decreasing
in the line per decision. Per-option profit predictions feed a multiple-choice
knapsack (exposure budget, expected-loss cap, no increase in arrears) solved with a proven gap
(:mod:`cardlab.modeling.optimise`). Baselines: the legacy (logged) lines and a "PD-only" optimiser whose
spend/revolving stay as at the logged line and whose PD does not move with the line. Off-policy estimates
(IPS, SNIPS, DR; :mod:`cardlab.modeling.ope`) of each policy come from the logged propensities, beside the
exact value from the oracle (``limit_potential``).

The package, by responsibility (each module's docstring says more):

- :mod:`~cardlab.tasks.limit.spec`: the task's names: the response models, treatment columns, policies;
- :mod:`~cardlab.tasks.limit.data`: the decision snapshots, the line options, the oracle's potential outcomes;
- :mod:`~cardlab.tasks.limit.responses`: the S-learner response models: their training matrices (line
  offset, base margin), the PD line slope and recalibration, loading them and predicting at every option;
- :mod:`~cardlab.tasks.limit.policy`: profit and loss of a line, the knapsack, the shadow prices, the
  policies solved per split (:class:`~cardlab.tasks.limit.policy.Plan`);
- :mod:`~cardlab.tasks.limit.grading`: oracle grading (clustered bounds, observable ceilings, bars) and OPE;
- :mod:`~cardlab.tasks.limit.plots`: the frontier and line-by-grade figures and tables;
- :mod:`~cardlab.tasks.limit.diagnostics`: analyses outside the pipeline (the response swap);
- :mod:`~cardlab.tasks.limit.stages`: the ``tune``, ``train`` and ``evaluate`` stages the CLI calls, built on
  the shared steps of :mod:`cardlab.modeling.workflow` (one study, fit, save and log per response model).

Every name other code imports from ``cardlab.tasks.limit`` is re-exported here.
"""

from __future__ import annotations

from cardlab.tasks.limit.data import (
    _load,
    in_arrears,
    line_options,
    logged_choice,
    oot_decisions,
    read_potential,
    treatment_columns,
)
from cardlab.tasks.limit.diagnostics import response_swap
from cardlab.tasks.limit.grading import (
    bars,
    grade_pd_model,
    grade_policies,
    pd_validation_frames,
    profit_ceiling,
)
from cardlab.tasks.limit.policy import (
    Plan,
    decision_prices,
    optimise,
    plan_decisions,
    profit_and_loss,
    realised_profit,
    unit_margins,
)
from cardlab.tasks.limit.responses import (
    _line_offset,
    _margin,
    _treat_sign,
    explained_model_parts,
    load_models,
    monotone_in_line,
    pd_line_slope,
    predict_response_matrix,
    predict_responses,
    recalibration_shift,
)
from cardlab.tasks.limit.spec import (
    ACTION_COLS,
    DESCRIPTION,
    MODELS,
    POLICIES,
    TASK,
    TREAT,
    TREAT_TEXT,
)
from cardlab.tasks.limit.stages import evaluate, train, tune

__all__ = [
    "ACTION_COLS",
    "DESCRIPTION",
    "MODELS",
    "POLICIES",
    "TASK",
    "TREAT",
    "TREAT_TEXT",
    "Plan",
    "_line_offset",
    "_load",
    "_margin",
    "_treat_sign",
    "bars",
    "decision_prices",
    "evaluate",
    "explained_model_parts",
    "grade_pd_model",
    "grade_policies",
    "in_arrears",
    "line_options",
    "load_models",
    "logged_choice",
    "monotone_in_line",
    "oot_decisions",
    "optimise",
    "pd_line_slope",
    "pd_validation_frames",
    "plan_decisions",
    "predict_response_matrix",
    "predict_responses",
    "profit_and_loss",
    "profit_ceiling",
    "read_potential",
    "realised_profit",
    "recalibration_shift",
    "response_swap",
    "train",
    "treatment_columns",
    "tune",
    "unit_margins",
]

"""The limit task's fixed names: the task, its MLflow description, the treatment columns (and their
reason texts for the explanations), the action columns of a decision, the three response models (target,
objective, metric) and the policies every evaluation compares.
"""

from __future__ import annotations

TASK = "limit"

DESCRIPTION = (
    "Credit-line response models for the co-branded card: 12-month spend, average revolving balance and "
    "90+ DPD as functions of the customer and the line (S-learners, line monotone increasing), tuned with "
    "Optuna; their per-line profit feeds a multiple-choice knapsack over accounts x lines under an exposure "
    "budget and an expected-loss cap. Graded out-of-time against the oracle's potential outcomes."
)

TREAT = ("treat_log_line", "treat_log_ratio")

# the treatment columns' reason texts (they are model inputs, not features of the dictionary)
TREAT_TEXT = {
    "treat_log_line": {"reason_zh": "信用额度水平", "reason_en": "the level of the credit line"},
    "treat_log_ratio": {"reason_zh": "本次额度调整幅度", "reason_en": "the size of this line change"},
}

ACTION_COLS = ("line_before_fen", "line_after_fen", "line_increase_fen", "cell", "propensity")

MODELS: dict[str, dict[str, str]] = {
    "spend": {"target": "t_spend", "objective": "reg:tweedie", "metric": "rmse"},
    "revolve": {"target": "t_revolve", "objective": "reg:tweedie", "metric": "rmse"},
    "default": {"target": "label", "objective": "binary:logistic", "metric": "logloss"},
}

POLICIES = ("legacy", "pd_only", "policy", "oracle")

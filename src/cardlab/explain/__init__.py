"""SHAP explanations, reason codes, faithfulness against the oracle and the bank-facing model report.

Entry point: :func:`cardlab.explain.run.explain` (``cardlab explain <task>``); see docs/explain.md.
"""

"""Portfolio operations: lifecycle KPIs, vintage / roll-rate curves, campaign evaluation, HTML report.

Entry point: :func:`cardlab.reports.portfolio.build_report`.
"""

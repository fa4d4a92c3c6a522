"""Point-in-time snapshot datasets (credit, limit, churn) and the feature dictionary, from data/raw only."""

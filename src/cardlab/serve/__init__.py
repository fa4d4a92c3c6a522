"""The real-time decision service (docs/serving.md): ``cardlab materialize`` writes the online feature store,
``cardlab serve`` answers ``POST /v1/decisions`` with the registered credit and limit models.

- :mod:`~cardlab.serve.store` - the feature store (SQLite), built by the batch feature code
- :mod:`~cardlab.serve.features` - stored row + application fields -> model inputs
- :mod:`~cardlab.serve.registry` - the models from the MLflow registry
- :mod:`~cardlab.serve.engine` - PD, decision, reasons, first line
- :mod:`~cardlab.serve.log` - the durable, idempotent decision log (SQLite WAL / PostgreSQL)
- :mod:`~cardlab.serve.app` - the FastAPI app, metrics, limits
"""

"""The HTTP decision service (FastAPI on uvicorn): ``POST /v1/decisions``, ``/healthz``, ``/readyz``,
``/metrics`` (Prometheus text) and the OpenAPI page (``/docs``, ``/openapi.json``). docs/serving.md.

Start-up: the decision log opens, then a loader thread resolves the models in the MLflow registry, opens the
feature store and warms the engine; until it succeeds ``/readyz`` answers 503 with the reason, and
decisions are refused (503) - a model that fails to load never serves.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from cardlab.serve.engine import DECISIONS, Application, DecisionEngine, DecisionError
from cardlab.serve.log import DecisionLog, IdempotencyConflict, Record, open_log

log = logging.getLogger("cardlab.serve")

PERSONAL = ("mobile", "id_number")  # validated, never stored, never echoed
ROUTES = ("/v1/decisions", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5)  # fmt: skip


SqliteSynchronous = Literal["FULL", "EXTRA", "NORMAL"]


class Settings(BaseModel):
    """What ``cardlab serve`` configures (docs/serving.md)."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str
    credit: str = "champion"  # alias or version of cardlab-credit
    limit: str = "champion"  # alias or version of cardlab-limit
    store: Path = Path("data/online")
    log_url: str = "sqlite:///decisions.db"
    sqlite_synchronous: SqliteSynchronous = "FULL"
    # default= by keyword: type checkers read a positional Field default as "no default"
    max_body_bytes: int = Field(default=16_384, ge=256, le=1_048_576)
    refer_band: float = Field(default=0.1, ge=0.0, lt=1.0)
    top_k: int = Field(default=4, ge=1, le=10)
    warm_up: int = Field(default=20, ge=0)


# ---------------------------------------------------------------------------------------------------------
# API schema
# ---------------------------------------------------------------------------------------------------------
class DecisionRequest(BaseModel):
    """A card application: who, when, and the application's own fields."""

    model_config = ConfigDict(extra="forbid", str_max_length=128)

    customer_id: int = Field(ge=1, le=2**53, description="platform customer id")
    application_date: date = Field(
        description="ISO date of the application; features use complete months before it"
    )
    legacy_score: int | None = Field(None, ge=0, le=1000, description="the bank's legacy application score")
    partner_bank: str | None = Field(
        None, min_length=1, max_length=32, description="partner bank code (an unknown bank scores as missing)"
    )
    mobile: str | None = Field(
        None,
        pattern=r"^1[0-9]{10}",
        min_length=11,
        max_length=11,
        description="personal: validated, never stored",
    )
    id_number: str | None = Field(
        None,
        pattern=r"^[0-9]{17}[0-9X]",
        min_length=18,
        max_length=18,
        description="personal: validated, never stored",
    )
    idempotency_key: str | None = Field(
        None, min_length=8, max_length=128, description="opaque retry key (or the Idempotency-Key header)"
    )
    return_features: bool = Field(False, description="include the model inputs (audit, skew checks)")


class Reason(BaseModel):
    rank: int
    group: str
    feature: str
    direction: Literal["adverse", "favourable"]
    contribution: float = Field(description="log-odds of default the reason group adds (adverse > 0)")
    zh: str
    en: str


class ModelInfo(BaseModel):
    name: str
    version: int
    alias: str | None


class LineDetail(BaseModel):
    line_yuan: float
    line_pd: float
    line_expected_profit_yuan: float


class DecisionResponse(BaseModel):
    decision_id: str
    idempotency_key: str
    customer_id: int
    application_date: date
    as_of_month: date
    decision: Literal["approve", "refer", "decline"]
    pd: float = Field(description="probability of 90+ DPD within 12 months of booking")
    pd_cutoff: float
    line_yuan: float | None = Field(description="initial line; null when declined")
    line_detail: LineDetail | None
    reasons: list[Reason]
    models: dict[str, ModelInfo]
    elapsed_ms: float = Field(description="time to decide (features to line), before the durable log write")
    features: dict[str, dict[str, float | None]] | None = None


class ErrorResponse(BaseModel):
    error: str
    detail: str | list[dict]


class Ready(BaseModel):
    ready: bool
    reason: str | None = None
    models: dict[str, ModelInfo] | None = None


# ---------------------------------------------------------------------------------------------------------
# state, metrics, middleware
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "cardlab_http_requests_total",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "cardlab_http_request_duration_seconds",
            "HTTP request latency (server side, body read to response sent)",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "cardlab_decisions_total", "decisions logged by outcome", ["decision"], registry=r
        )
        self.errors = Counter(
            "cardlab_decision_errors_total", "refused decision requests by code", ["code"], registry=r
        )
        self.stages = Histogram(
            "cardlab_decision_stage_seconds",
            "time per decision stage (features, score, reasons, line, log)",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.group = Histogram(
            "cardlab_log_commit_group_size",
            "decisions per durable commit (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.ready = Gauge("cardlab_models_ready", "1 when the models are loaded and warmed", registry=r)
        for d in DECISIONS:
            self.decisions.labels(d)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stages.labels(stage).observe(seconds)

    def observe_commit(self, n: int, seconds: float) -> None:
        self.group.observe(n)
        self.stages.labels("log").observe(seconds)


@dataclass
class State:
    settings: Settings
    metrics: Metrics
    engine: DecisionEngine | None = None
    log: DecisionLog | None = None
    error: str | None = "loading models"


class Limits:
    """Pure ASGI middleware: request size limit (413 before the app reads an oversized body) and the request
    counters / latency histogram."""

    def __init__(self, app, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in ROUTES else "other"
        tick = time.perf_counter()
        status = [500]

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                limit = self.state.settings.max_body_bytes
                length = dict(scope["headers"]).get(b"content-length")
                if length is not None and (not length.isdigit() or int(length) > limit):
                    await _too_large(send_status, limit)
                    return
                chunks, size, more = [], 0, True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        await _too_large(send_status, limit)
                        return
                    chunks.append(chunk)
                    more = message.get("more_body", False)
                pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

                async def replay():
                    return pending.pop() if pending else await receive()

                await self.app(scope, replay, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            m = self.state.metrics
            m.requests.labels(route, scope["method"], str(status[0])).inc()
            m.latency.labels(route).observe(time.perf_counter() - tick)


async def _too_large(send, limit: int) -> None:
    body = json.dumps(
        {"error": "request_too_large", "detail": f"request bodies are limited to {limit} bytes"}
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


def request_sha256(body: DecisionRequest) -> str:
    """Digest of what decides: the request without personal fields, the key and the audit flag."""
    core = body.model_dump(mode="json", exclude={*PERSONAL, "idempotency_key", "return_features"})
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()


def _error(status: int, code: str, detail, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


# ---------------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------------
def build_engine(settings: Settings, metrics: Metrics) -> DecisionEngine:
    """Resolve and load both models and the store, check every model feature has a source, warm up."""
    from cardlab.serve.registry import REGISTERED, ModelRef, load_credit, load_limit
    from cardlab.serve.store import FeatureStore

    credit = load_credit(settings.tracking_uri, ModelRef.parse(REGISTERED["credit"], settings.credit))
    limit = load_limit(settings.tracking_uri, ModelRef.parse(REGISTERED["limit"], settings.limit))
    engine = DecisionEngine(
        credit,
        limit,
        FeatureStore(settings.store),
        refer_band=settings.refer_band,
        top_k=settings.top_k,
        observe=metrics.observe_stage,
    )
    engine.warm_up(settings.warm_up)
    return engine


def _load(state: State) -> None:
    try:
        state.engine = build_engine(state.settings, state.metrics)
    except Exception as err:  # every failure keeps the service not-ready, with its reason
        state.error = f"{type(err).__name__}: {err}"
        log.error("models not loaded: %s", state.error)
        return
    state.error = None
    state.metrics.ready.set(1)
    log.info("ready: %s", state.engine.models())


# ---------------------------------------------------------------------------------------------------------
# the app
# ---------------------------------------------------------------------------------------------------------
def create_app(settings: Settings, *, engine: DecisionEngine | None = None) -> FastAPI:
    """The service; ``engine`` given = already loaded (tests), else loaded in a thread at start-up."""
    metrics = Metrics()
    state = State(settings=settings, metrics=metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.log = open_log(
            settings.log_url, sqlite_synchronous=settings.sqlite_synchronous, observe=metrics.observe_commit
        )
        if engine is not None:
            state.engine, state.error = engine, None
            engine.observe = metrics.observe_stage
            metrics.ready.set(1)
        else:
            threading.Thread(target=_load, args=(state,), name="model-loader", daemon=True).start()
        try:
            yield
        finally:
            state.log.close()

    app = FastAPI(
        title="cardlab decision service",
        version="1",
        summary="Real-time co-branded card decisions: approve / refer / decline, PD, first line, reasons (zh/en).",
        lifespan=lifespan,
    )
    app.state.cardlab = state

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # field path, message and type only: never the submitted value (personal data stays out of errors)
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        metrics.errors.labels("invalid_request").inc()
        return _error(422, "invalid_request", detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # e.g. a body that is not UTF-8 JSON (400), an unknown path (404), a wrong method (405)
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail), exc.headers)

    responses: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "the body is not parseable (not UTF-8 JSON)"},
        404: {"model": ErrorResponse, "description": "unknown customer or no feature snapshot for the date"},
        409: {"model": ErrorResponse, "description": "idempotency key reused for a different request"},
        413: {"model": ErrorResponse, "description": "request body too large"},
        422: {"model": ErrorResponse, "description": "invalid request (field path, no echo of values)"},
        503: {"model": ErrorResponse, "description": "models not loaded, or the decision log failed"},
    }

    @app.post("/v1/decisions", response_model=DecisionResponse, responses=responses)
    async def decide(
        body: DecisionRequest,
        idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", max_length=128, description="opaque retry key")
        ] = None,
    ):
        """Decide one application; a retry with the same idempotency key returns the logged decision."""
        tick = time.perf_counter()
        # the header (the IETF Idempotency-Key draft) wins over the body field; none: a fresh key (no retry)
        key = (idempotency_key or "").strip() or body.idempotency_key or uuid.uuid4().hex
        sha = request_sha256(body)
        decisions = state.log
        if decisions is None:  # opened by the lifespan before the first request
            raise RuntimeError("the decision log is not open")
        prior = decisions.get(key)
        if prior is not None:
            if prior[0] != sha:
                metrics.errors.labels("idempotency_conflict").inc()
                return _error(
                    409, "idempotency_conflict", "this idempotency key was used for a different request"
                )
            return JSONResponse(prior[1], headers={"Idempotent-Replayed": "true"})
        engine = state.engine
        if engine is None:
            metrics.errors.labels("not_ready").inc()
            return _error(503, "not_ready", state.error or "loading models", {"Retry-After": "5"})
        app_ = Application(body.customer_id, body.application_date, body.legacy_score, body.partner_bank)
        try:
            doc = engine.decide(app_, with_features=body.return_features)
        except DecisionError as err:
            metrics.errors.labels(err.code).inc()
            return _error(err.status, err.code, err.message)
        decided = time.perf_counter()
        doc = {"decision_id": uuid.uuid4().hex, "idempotency_key": key, **doc}
        doc["elapsed_ms"] = round((decided - tick) * 1e3, 3)
        record = Record(key, doc["decision_id"], sha, body.customer_id, doc["decision"], doc)
        try:
            stored = await decisions.commit(record)
        except IdempotencyConflict:
            metrics.errors.labels("idempotency_conflict").inc()
            return _error(
                409, "idempotency_conflict", "this idempotency key was used for a different request"
            )
        except Exception as err:  # the decision is not logged: the client must not act on it
            metrics.errors.labels("log_failed").inc()
            log.error("decision log write failed: %s", err)
            return _error(
                503, "log_failed", "the decision could not be logged durably; retry with the same key"
            )
        replayed = stored["decision_id"] != doc["decision_id"]
        if not replayed:
            metrics.decisions.labels(stored["decision"]).inc()
        total = (time.perf_counter() - tick) * 1e3
        headers = {"Server-Timing": f"decide;dur={doc['elapsed_ms']:.3f}, total;dur={total:.3f}"}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(stored, headers=headers)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
    async def readyz():
        """Readiness: 200 only when both models and the feature store are loaded and warmed."""
        if state.engine is None:
            return JSONResponse({"ready": False, "reason": state.error}, status_code=503)
        return {"ready": True, "models": state.engine.models()}

    @app.get("/metrics", response_class=PlainTextResponse, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus() -> PlainTextResponse:
        """Prometheus text format: request counts, latency histograms, decisions by outcome, stage timings."""
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(Limits, state=state)
    return app

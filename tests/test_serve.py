"""The decision service's HTTP contract: readiness, bad input, limits, idempotency, metrics, and a fuzz run
from its own OpenAPI schema (schemathesis). The service runs in a uvicorn server on a loopback port, with the
models of the pipeline's outputs (the registered versions behind ``experiments/``)."""

from __future__ import annotations

import threading
import time
import uuid
from types import SimpleNamespace

import httpx
import pytest

from cardlab.serve.app import Metrics, Settings, build_engine, create_app
from cardlab.serve.harness import ThreadedServer, pipeline_versions

pytestmark = pytest.mark.slow


def _settings(root, tmp, **kw) -> Settings:
    return Settings(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        store=root / "data" / "online",
        log_url=f"sqlite:///{tmp / 'decisions.db'}",
        max_body_bytes=4096,
        warm_up=2,
        **kw,
    )


@pytest.fixture(scope="module")
def service(pipeline_root, tmp_path_factory):
    versions = pipeline_versions(pipeline_root)
    settings = _settings(pipeline_root, tmp_path_factory.mktemp("serve"), **versions)
    engine = build_engine(settings, Metrics())
    app = create_app(settings, engine=engine)
    store = engine.store
    customer = store.customers(store.today, 1)[0]
    with ThreadedServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        yield SimpleNamespace(
            client=client,
            url=srv.url,
            app=app,
            customer=customer,
            today=store.month_start(store.today).replace(day=5).isoformat(),
            bank=store.partner_banks[0],
        )


def _body(svc, **kw) -> dict:
    return {
        "customer_id": svc.customer,
        "application_date": svc.today,
        "legacy_score": 640,
        "partner_bank": svc.bank,
        **kw,
    }


def test_ready_and_decides(service):
    c = service.client
    assert c.get("/healthz").json() == {"status": "ok"}
    ready = c.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    r = c.post("/v1/decisions", json=_body(service), headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["decision"] in ("approve", "refer", "decline")
    assert 0.0 < doc["pd"] < 1.0
    assert (doc["line_yuan"] is None) == (doc["decision"] == "decline")
    assert 1 <= len(doc["reasons"]) <= 4
    assert all(reason["zh"] and reason["en"] for reason in doc["reasons"])
    assert doc["models"]["credit"]["name"] == "cardlab-credit"
    assert "total;dur=" in r.headers["server-timing"]


def test_retry_returns_the_logged_decision_and_a_reused_key_is_refused(service):
    c = service.client
    key = uuid.uuid4().hex
    first = c.post("/v1/decisions", json=_body(service), headers={"Idempotency-Key": key})
    again = c.post("/v1/decisions", json=_body(service), headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    # the key in the body works the same way
    assert c.post("/v1/decisions", json=_body(service, idempotency_key=key)).json() == first.json()
    other = c.post("/v1/decisions", json=_body(service, legacy_score=700), headers={"Idempotency-Key": key})
    assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict"


def test_concurrent_duplicates_get_one_decision(service):
    key = uuid.uuid4().hex
    results = []

    def post():
        with httpx.Client(base_url=service.url, timeout=30) as c:
            results.append(
                c.post("/v1/decisions", json=_body(service), headers={"Idempotency-Key": key}).json()
            )

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r["decision_id"] for r in results}) == 1


def test_invalid_request_names_the_field_and_never_echoes_values(service):
    secret_mobile, secret_name = "12345678", "Zhang San"
    r = service.client.post(
        "/v1/decisions",
        json=_body(service, mobile=secret_mobile, applicant_name=secret_name, application_date="2025-02-30"),
    )
    assert r.status_code == 422
    body = r.text
    assert secret_mobile not in body and secret_name not in body and "2025-02-30" not in body
    locs = {tuple(d["loc"]) for d in r.json()["detail"]}
    assert {("body", "mobile"), ("body", "applicant_name"), ("body", "application_date")} <= locs
    # a valid personal field is accepted and never stored in the decision
    ok = service.client.post("/v1/decisions", json=_body(service, mobile="13800138000"))
    assert ok.status_code == 200 and "13800138000" not in ok.text


def test_unknown_customer_and_missing_snapshot_are_404(service):
    c = service.client
    r = c.post("/v1/decisions", json=_body(service, customer_id=2**52))
    assert r.status_code == 404 and r.json()["error"] == "unknown_customer"
    r = c.post("/v1/decisions", json=_body(service, application_date="2023-03-01"))
    assert r.status_code == 404 and r.json()["error"] == "no_feature_snapshot"
    assert "2023-03" in r.json()["detail"]


def test_request_size_limit(service):
    big = _body(service, partner_bank="x" * 5000)
    r = service.client.post("/v1/decisions", json=big)
    assert r.status_code == 413 and r.json()["error"] == "request_too_large"

    def chunks():  # no content-length: the limit is enforced on the bytes actually read
        yield b'{"customer_id": 1, "application_date": "2026-01-05", "partner_bank": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    r = service.client.post("/v1/decisions", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_metrics_count_requests_and_decisions(service):
    c = service.client
    c.post("/v1/decisions", json=_body(service), headers={"Idempotency-Key": uuid.uuid4().hex})
    text = c.get("/metrics").text
    assert 'cardlab_http_requests_total{method="POST",route="/v1/decisions",status="200"}' in text
    assert "cardlab_http_request_duration_seconds_bucket" in text
    assert any(line.startswith("cardlab_decisions_total{decision=") and not line.endswith(" 0.0")
               for line in text.splitlines())  # fmt: skip
    assert 'cardlab_decision_stage_seconds_count{stage="log"}' in text


def test_openapi_page(service):
    assert service.client.get("/docs").status_code == 200
    schema = service.client.get("/openapi.json").json()
    assert "/v1/decisions" in schema["paths"]


@pytest.mark.parametrize("credit", ["no-such-alias", "999"])
def test_a_model_that_fails_to_load_keeps_readyz_false(pipeline_root, tmp_path, credit):
    versions = pipeline_versions(pipeline_root)
    app = create_app(_settings(pipeline_root, tmp_path, credit=credit, limit=versions["limit"]))
    with ThreadedServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        deadline = time.monotonic() + 60
        while True:
            ready = c.get("/readyz")
            assert ready.status_code == 503
            reason = ready.json()["reason"]
            if reason != "loading models" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "ModelLoadError" in reason and "cardlab-credit" in reason
        r = c.post("/v1/decisions", json={"customer_id": 1, "application_date": "2026-01-05"})
        assert r.status_code == 503 and r.json()["error"] == "not_ready"
        assert c.get("/healthz").status_code == 200


def test_fuzz_from_the_openapi_schema(service):
    """schemathesis: generated valid and invalid requests for every operation; no 5xx, responses match the
    schema (status codes, content types, bodies), invalid bodies are rejected with 4xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    cases = schema.as_strategy(schemathesis.GenerationMode.POSITIVE) | schema.as_strategy(
        schemathesis.GenerationMode.NEGATIVE
    )

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case):
        case.call_and_validate(base_url=service.url)

    run()

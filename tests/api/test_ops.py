"""Operations: /healthz names what is unreachable, /metrics counts, and intake never
answers 2xx for a lead the database did not store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from leadrelay.api import create_app
from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock

from .conftest import LEAD, Tenant, error_of


def test_healthz_is_ok_with_the_database_and_the_broker_reachable(client: TestClient) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "database": None, "broker": None}


def test_healthz_names_an_unreachable_broker(
    tmp_path: Path, database_url: str, clock: FakeClock, unused_port: int,
    make_settings: Callable[..., object],
) -> None:
    settings = make_settings(tmp_path, database_url,
                             broker_url=f"redis://127.0.0.1:{unused_port}/0")
    engine = Leadrelay(settings, clock=clock)  # type: ignore[arg-type]
    try:
        with TestClient(create_app(engine)) as client:
            answer = client.get("/healthz")
        assert answer.status_code == 503
        body = answer.json()
        assert body["status"] == "unavailable" and body["database"] is None
        assert body["broker"] and "broker unreachable" in body["message"]
    finally:
        engine.close()


def test_metrics_count_leads_by_source_and_deliveries_by_state(
    client: TestClient, acme: Tenant
) -> None:
    client.post("/v1/integrations", headers=acme.headers, json={
        "form_id": acme.form_id, "name": "CRM", "connector": "http_post",
        "config": {"url": "http://127.0.0.1:9/leads"}, "active": True})
    client.post(f"/v1/forms/{acme.form_key}/leads", json=LEAD)
    client.post(f"/v1/forms/{acme.form_id}/leads", headers=acme.headers,
                json={"leads": [{"fields": LEAD}, {"fields": LEAD}]})
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert 'leadrelay_leads_received_total{source="form"} 1.0' in text
    assert 'leadrelay_leads_received_total{source="external"} 2.0' in text
    assert 'leadrelay_deliveries{outcome="",state="pending"} 3.0' in text
    assert "leadrelay_queue_depth 3.0" in text


@contextmanager
def database_cut(url: str) -> Iterator[None]:
    """Nobody can reach the PostgreSQL database ``url`` names until the block ends."""
    name = url.rsplit("/", 1)[1]
    admin = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1)
                             .rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'alter database "{name}" allow_connections false'))
            conn.execute(sa.text("select pg_terminate_backend(pid) from pg_stat_activity "
                                 "where datname = :n and pid <> pg_backend_pid()"), {"n": name})
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'alter database "{name}" allow_connections true'))
        admin.dispose()


# PostgreSQL only: a server can be cut off; the SQLite ledger is a local file.
@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                         indirect=True)
def test_an_unreachable_database_is_a_503_and_never_a_2xx(
    database_url: str, client: TestClient, engine: Leadrelay, acme: Tenant,
) -> None:
    path = f"/v1/forms/{acme.form_key}/leads"
    with database_cut(database_url):
        # When a lead arrives while the database cannot be reached
        answer = client.post(path, json=LEAD)
        # Then the answer is 503, naming the database: the lead was not stored
        assert answer.status_code == 503
        assert error_of(answer)["code"] == "unavailable"
        assert error_of(answer)["field"] == "database"
        external = client.post(f"/v1/forms/{acme.form_id}/leads", headers=acme.headers,
                               json={"fields": LEAD})
        assert external.status_code == 503
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["database"]
    # and once it is back, intake works again, and only what was answered 2xx is there
    assert client.post(path, json=LEAD).status_code == 202
    with engine.ledger.transaction() as conn:
        assert conn.execute(sa.text("select count(*) from leads")).scalar_one() == 1

"""The Graph read: a failure never loses the lead; it is retried by the engine's retry
policy and, when the policy gives up, sits in the failed collection with Graph's error."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient
from werkzeug import Request, Response

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.ledger import Delivery, FacebookLead, Lead
from leadrelay.engine.secrets import SecretBox
from leadrelay.engine.settings import Settings
from leadrelay.facebook import GraphSettings

from .conftest import (
    APP_SECRET,
    LEADGEN_IDS,
    PAGE_ID,
    PAGE_TOKEN,
    VERSION,
    Graph,
    Setup,
    fixture,
    notification,
    signed,
)

URL = "/v1/facebook/webhook"
LEAD = LEADGEN_IDS[0]


def notify(client: TestClient, *leadgen_ids: str) -> None:
    body = notification(*leadgen_ids)
    answer = client.post(URL, content=body, headers=signed(body))
    assert answer.status_code == 200, answer.text


def the_row(engine: Leadrelay) -> FacebookLead:
    with engine.ledger.session() as s:
        return s.scalars(sa.select(FacebookLead)).one()


def leads(engine: Leadrelay) -> list[Lead]:
    with engine.ledger.session() as s:
        return list(s.scalars(sa.select(Lead)))


@contextmanager
def notified_engine(tmp_path: Path, database_url: str, clock: FakeClock, graph: Graph, *,
                    timeout: float, egress_allow: tuple[str, ...] | None = None
                    ) -> Iterator[Leadrelay]:
    """An engine of its own (Graph read ``timeout``, ``egress_allow``), its page connected
    and a signed notification of :data:`LEAD` received: the read is due."""
    settings = Settings(home=tmp_path, database_url=database_url, broker_url=None,
                        secret_key=SecretBox.generate_key(), plugins_file=None,
                        egress_allow=egress_allow)
    engine = Leadrelay(settings, clock=clock,
                       graph=GraphSettings(base_url=graph.url, version=VERSION, timeout=timeout))
    try:
        account = engine.manage.create_account("Acme", "owner@acme.test", plan="growth")
        form = engine.manage.create_form(account.id, "Leads")
        engine.facebook.connect(account.id, PAGE_ID, app_secret=APP_SECRET,
                                verify_token="t0ken", page_access_token=PAGE_TOKEN,
                                forms={"1418823349021556": form.id})
        body = notification(LEAD)
        engine.facebook.receive(body, signed(body)["X-Hub-Signature-256"])
        yield engine
    finally:
        engine.close()


def test_a_graph_190_keeps_the_lead_and_the_next_attempt_recovers(
    client: TestClient, engine: Leadrelay, setup: Setup, graph: Graph, clock: FakeClock
) -> None:
    # Given a Graph API whose first read answers the contract's 190 (token expired)
    graph.fails_once(LEAD, fixture("graph_error.json"), 400)
    graph.serves(LEAD)
    notify(client, LEAD)
    # When the background read runs
    [first] = engine.facebook.read_due()
    # Then no lead yet, but the notification is kept, to be read again with Graph's reason
    assert first.state == "reading" and first.next_due_at is not None
    row = the_row(engine)
    assert row.state == "reading" and row.attempts == 1
    assert "Graph API answered 400: error 190 (OAuthException)" in (row.last_reason or "")
    assert "Session has expired" in (row.last_reason or "")
    assert PAGE_TOKEN not in (row.last_reason or "")
    assert leads(engine) == []
    # And nothing is read again before the retry policy says so (2 minutes)
    assert engine.facebook.read_due() == []
    # When the retry comes due, Graph answers the lead: stored, once
    clock.advance(minutes=3)
    [second] = engine.facebook.read_due()
    assert second.state == "stored"
    assert [lead.external_id for lead in leads(engine)] == [LEAD]
    assert the_row(engine).state == "stored" and the_row(engine).lead_id == second.lead_id


def test_a_read_that_keeps_failing_is_in_the_failed_collection_and_can_be_read_again(
    client: TestClient, engine: Leadrelay, setup: Setup, graph: Graph, clock: FakeClock
) -> None:
    # Given a token that stays expired
    graph.serves(LEAD, fixture("graph_error.json"), status=400)
    notify(client, LEAD)
    # When the read is tried as often as the engine's default retry policy allows (3)
    for _ in range(3):
        engine.facebook.read_due()
        clock.advance(minutes=10)
    assert engine.facebook.read_due() == []
    # Then the lead is not lost: it is listed as not read, with Graph's error
    failed = client.get("/v1/facebook/leads", params={"state": "not_read"},
                        headers=setup.headers).json()
    assert [(f["leadgen_id"], f["attempts"]) for f in failed] == [(LEAD, 3)]
    assert "error 190 (OAuthException)" in failed[0]["reason"]
    assert PAGE_TOKEN not in str(failed)
    assert len(graph.reads(LEAD)) == 3
    # and the failed collection counts it, pointing there (it has no delivery to list)
    collection = client.get("/v1/deliveries/failed", headers=setup.headers).json()
    assert (collection["items"], collection["facebook_not_read"]) == ([], 1)
    # When the operator gives a new token and asks for the reads again
    graph.server.clear_all_handlers()
    graph.serves(LEAD)
    patched = client.patch(f"/v1/facebook/pages/{setup.connection_id}", headers=setup.headers,
                           json={"page_access_token": "EAAG-new-token"})
    assert patched.status_code == 200 and "EAAG-new-token" not in patched.text
    again = client.post(f"/v1/facebook/pages/{setup.connection_id}/read-again",
                        headers=setup.headers)
    assert again.json()["count"] == 1
    engine.facebook.read_due()
    # Then the lead is stored, read with the new token, and no longer counted as failed
    assert [lead.external_id for lead in leads(engine)] == [LEAD]
    collection = client.get("/v1/deliveries/failed", headers=setup.headers).json()
    assert collection["facebook_not_read"] == 0
    assert graph.reads(LEAD)[-1].args["access_token"] == "EAAG-new-token"


def test_a_5xx_and_an_answer_without_field_data_are_retried_with_their_reason(
    client: TestClient, engine: Leadrelay, setup: Setup, graph: Graph, clock: FakeClock
) -> None:
    graph.fails_once(LEADGEN_IDS[0], {"error": {"message": "Service unavailable"}}, 503)
    graph.serves(LEADGEN_IDS[1], {"id": LEADGEN_IDS[1], "created_time": "2026-12-02T13:59:58"
                                  "+0000"})
    notify(client, *LEADGEN_IDS)
    results = {r.row_id: r for r in engine.facebook.read_due()}
    reasons = sorted(r.reason or "" for r in results.values())
    assert all(r.state == "reading" for r in results.values())
    assert reasons[0].startswith("Graph API answered 503")
    assert reasons[1] == "Graph answer: the Graph answer has no field_data"
    assert leads(engine) == []


def test_a_graph_timeout_keeps_the_lead(
    tmp_path: Path, database_url: str, clock: FakeClock, graph: Graph
) -> None:
    # Given a Graph API slower than the configured read timeout
    def slow(_request: Request) -> Response:
        time.sleep(0.6)
        return Response("{}", content_type="application/json")

    graph.server.expect_request(f"/{VERSION}/{LEAD}").respond_with_handler(slow)
    with notified_engine(tmp_path, database_url, clock, graph, timeout=0.2) as engine:
        # When the read runs
        started = time.monotonic()
        [result] = engine.facebook.read_due()
        # Then it ends at the timeout, the lead kept for a retry, the reason says why
        assert time.monotonic() - started < 0.55
        assert result.state == "reading"
        assert "Graph API unreachable" in (result.reason or "")
        assert "no answer within 0.2s" in (result.reason or "")


def test_a_stored_lead_is_routed_like_any_lead_of_its_form_realtime_included(
    client: TestClient, engine: Leadrelay, setup: Setup, graph: Graph
) -> None:
    # Given the form's integrations: one in the background, one in real time
    crm = graph.server
    crm.expect_request("/crm", method="POST").respond_with_json({"id": "crm-1"})
    for name, realtime in (("Background CRM", False), ("Real-time CRM", True)):
        engine.manage.create_integration(setup.form_id, name=name, connector="http_post",
                                         config={"url": crm.url_for("/crm")},
                                         realtime=realtime, active=True)
    graph.serves(LEAD)
    notify(client, LEAD)
    # When the read stores the lead and the deliveries run
    [stored] = engine.facebook.read_due()
    engine.join()
    engine.deliver_due()
    # Then each integration got it, and the integration object names its source
    with engine.ledger.session() as s:
        states = list(s.scalars(sa.select(Delivery.state).where(
            Delivery.lead_id == stored.lead_id)))
    assert states == ["delivered", "delivered"]
    posted = [r for r, _ in crm.log if r.path == "/crm"]
    assert len(posted) == 2
    assert all(r.form["email"] == "amira.haddad@example.com"
               and r.form["facebook_leadgen_id"] == LEAD for r in posted)
    lead = client.get(f"/v1/leads/{stored.lead_id}", headers=setup.headers).json()
    assert lead["source"] == "facebook" and lead["external_id"] == LEAD


def test_a_lost_broker_message_is_read_after_the_sweep(
    client: TestClient, engine: Leadrelay, setup: Setup, graph: Graph, clock: FakeClock
) -> None:
    # Given a notification stored with no worker running (nobody consumes the message)
    graph.serves(LEAD)
    notify(client, LEAD)
    # When the sweep runs: it announces the due read (the in-process broker queues it)
    assert engine.facebook.sweep() == 1
    assert engine.facebook.sweep() == 0  # on its way: not announced twice within the grace
    # Then a worker that starts reads it
    engine.start_worker(threads=1)
    deadline = time.monotonic() + 10
    while not leads(engine) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [lead.external_id for lead in leads(engine)] == [LEAD]




def test_the_graph_reads_follow_the_engines_egress_policy(
    tmp_path: Path, database_url: str, clock: FakeClock, graph: Graph
) -> None:
    # Given an engine whose own egress policy allows no private address, though the
    # process environment (the test suite's) allows loopback, and a Graph API on loopback
    graph.serves(LEAD)
    with notified_engine(tmp_path, database_url, clock, graph, timeout=2,
                         egress_allow=()) as engine:
        # When the read runs
        [result] = engine.facebook.read_due()
        # Then the engine's policy refused the connection: nothing was read, the read is
        # not retried (as a delivery to a refused address), and the reason says why
        assert graph.reads(LEAD) == []
        assert result.state == "not_read"
        assert (result.reason or "").startswith("refused target: ")
        assert "a loopback address" in (result.reason or "")

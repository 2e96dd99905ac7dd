"""Group commit: concurrent writes share transactions, and an error stays with its caller.

The generic :class:`GroupCommit` is driven with events (no sleeps): a first batch is
held open until the other callers are queued, so the second batch's shape is known.
The engine-level tests check what users rely on: concurrent submits and deliveries
each land once, a bad lead in a batch fails only its own submit, and a held
connection the database dropped is replaced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from leadrelay.engine import delivery
from leadrelay.engine.app import Leadrelay
from leadrelay.engine.batching import GroupCommit
from leadrelay.engine.errors import NotFound
from leadrelay.engine.ledger import Attempt, Delivery, DeliveryState, Lead
from leadrelay.engine.priority import bulk


class Recorder:
    """A batch function that records its batches and can hold the first one open."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.entered = threading.Event()

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(10)
        if any(i < 0 for i in items):
            raise ValueError(f"negative item in {list(items)}")
        return [i * 10 for i in items]


def _queue_behind_first_batch(
    commit: GroupCommit[int, int],
    run: Recorder,
    pool: ThreadPoolExecutor,
    items: list[int],
    wait_for: Callable[..., None],
) -> tuple[Future[int], list[Future[int]]]:
    """Call with 1 and hold that batch open until ``items`` all wait; then let it end."""
    first = pool.submit(commit, 1)
    assert run.entered.wait(10)
    rest = [pool.submit(commit, i) for i in items]
    wait_for(lambda: len(commit._waiting) == len(items), 10)
    run.release.set()
    return first, rest


def test_a_caller_alone_runs_alone_and_gets_its_result() -> None:
    run = Recorder()
    run.release.set()
    commit = GroupCommit(run)
    assert commit(4) == 40
    assert run.batches == [[4]]


def test_callers_arriving_during_a_batch_share_the_next_one(wait_for: Callable[..., None]) -> None:
    run = Recorder()
    commit = GroupCommit(run)
    with ThreadPoolExecutor(6) as pool:
        first, rest = _queue_behind_first_batch(commit, run, pool, [2, 3, 4, 5, 6], wait_for)
        assert first.result(10) == 10
        assert sorted(f.result(10) for f in rest) == [20, 30, 40, 50, 60]
    assert run.batches[0] == [1]
    assert sorted(run.batches[1]) == [2, 3, 4, 5, 6]
    assert len(run.batches) == 2
    assert (commit.batches, commit.items) == (2, 6)


def test_a_failing_item_fails_only_its_caller(wait_for: Callable[..., None]) -> None:
    run = Recorder()
    commit = GroupCommit(run)
    with ThreadPoolExecutor(4) as pool:
        first, (*good, bad) = _queue_behind_first_batch(commit, run, pool, [2, 3, -1], wait_for)
        assert first.result(10) == 10
        assert sorted(f.result(10) for f in good) == [20, 30]
        with pytest.raises(ValueError, match=r"negative item in \[-1\]"):
            bad.result(10)
    # The shared batch failed as a whole, then each item ran on its own.
    assert sorted(map(sorted, run.batches[2:])) == [[-1], [2], [3]]


def test_max_batch_bounds_a_batch(wait_for: Callable[..., None]) -> None:
    run = Recorder()
    commit = GroupCommit(run, max_batch=2)
    with ThreadPoolExecutor(6) as pool:
        first, rest = _queue_behind_first_batch(commit, run, pool, [2, 3, 4, 5, 6], wait_for)
        assert [f.result(10) for f in [first, *rest]] == [10, 20, 30, 40, 50, 60]
    assert all(len(b) <= 2 for b in run.batches)
    assert sorted(i for b in run.batches for i in b) == [1, 2, 3, 4, 5, 6]


def test_a_wrong_number_of_results_is_an_error_not_a_mixup() -> None:
    commit: GroupCommit[int, int] = GroupCommit(lambda items: [])
    with pytest.raises(RuntimeError, match="a batch of 1 items gave 0 results"):
        commit(1)


# -- the engine ---------------------------------------------------------------------------


def _count(app: Leadrelay, model: type) -> int:
    with app.ledger.session() as s:
        return int(s.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def _integrate(app: Leadrelay, form_id: int, url: str = "http://127.0.0.1:9/leads") -> int:
    return app.manage.create_integration(
        form_id, name="CRM", connector="http_post", config={"url": url}, active=True
    ).id


def test_concurrent_submits_each_land_once_and_a_bad_form_fails_only_its_own(
    app: Leadrelay, form_id: int
) -> None:
    _integrate(app, form_id)
    def submit(i: int) -> int | str:
        try:
            return app.submit(form_id if i % 7 else 999_999, {"email": f"l{i}@example.com"}).lead_id
        except NotFound as exc:
            return str(exc)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(submit, range(200)))
    lead_ids = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, str)]
    assert len(refused) == len(range(0, 200, 7)) and set(refused) == {
        "form 999999 does not exist"
    }
    assert len(set(lead_ids)) == len(lead_ids) == 200 - len(refused)
    assert _count(app, Lead) == len(lead_ids)
    assert _count(app, Delivery) == len(lead_ids)  # the form has one active integration


def test_a_delivery_asked_for_twice_in_one_batch_is_claimed_once(
    app: Leadrelay, form_id: int
) -> None:
    from leadrelay.engine.delivery import _Claim

    _integrate(app, form_id)
    (delivery_id,) = app.submit(form_id, {"email": "a@example.com"}).delivery_ids
    with app.ledger.transaction() as conn:
        first, second = app.runner._write_claims(
            conn, [_Claim((delivery_id,)), _Claim((delivery_id,))]
        )
    assert first is not None and [d.id for d, _, _ in first] == [delivery_id]
    assert second == []


def test_concurrent_deliveries_are_each_attempted_once(
    app: Leadrelay, form_id: int, httpserver
) -> None:  # type: ignore[no-untyped-def]
    httpserver.expect_request("/leads", method="POST").respond_with_json({"ok": True})
    _integrate(app, form_id, httpserver.url_for("/leads"))
    ids = [i for n in range(60) for i in app.submit(form_id, {"n": n}).delivery_ids]
    # Every delivery asked for by three threads at once: duplicate messages.
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(app.deliver, ids * 3))
    done = [r for r in results if r is not None]
    assert sorted(r.delivery_id for r in done) == sorted(ids)
    assert _count(app, Attempt) == len(ids)
    assert len(httpserver.log) == len(ids)


def _submit(app: Leadrelay, form_id: int, count: int) -> list[int]:
    return [i for n in range(count) for i in app.submit(form_id, {"n": n}).delivery_ids]


def _state(app: Leadrelay, delivery_id: int) -> tuple[str, int]:
    delivery = app.inspect(delivery_id)["delivery"]
    return delivery["state"], delivery["attempts"]


def test_a_batch_is_claimed_in_one_transaction_and_recorded_in_one(
    app: Leadrelay, form_id: int, httpserver
) -> None:  # type: ignore[no-untyped-def]
    httpserver.expect_request("/leads", method="POST").respond_with_json({"ok": True})
    _integrate(app, form_id, httpserver.url_for("/leads"))
    ids = _submit(app, form_id, 10)
    before = app.runner.writes.batches

    results = app.runner.run_batch(ids)

    assert [r.delivery_id for r in results] == ids
    assert {r.state for r in results} == {DeliveryState.DELIVERED}
    assert app.runner.writes.batches - before == 2  # one claim, one record
    assert len(httpserver.log) == 10 and _count(app, Attempt) == 10


def test_a_bulk_batch_pauses_for_live_work_between_its_sends_and_a_live_one_does_not(
    app: Leadrelay, form_id: int, httpserver, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    httpserver.expect_request("/leads", method="POST").respond_with_json({"ok": True})
    _integrate(app, form_id, httpserver.url_for("/leads"))
    ids = _submit(app, form_id, 5)
    pauses: list[int] = []  # requests the CRM had received at each pause

    class Pause:
        def __call__(self) -> None:
            pauses.append(len(httpserver.log))

    monkeypatch.setattr(delivery, "GiveWay", Pause)
    app.runner.run_batch(ids[:2])
    assert pauses == []
    with bulk():
        app.runner.run_batch(ids[2:])
    assert pauses == [3, 4]  # before each of the bulk batch's sends but its first
    assert len(httpserver.log) == 5


def test_a_batch_gives_back_what_is_left_once_half_its_lease_is_gone(
    app: Leadrelay, form_id: int, httpserver, clock
) -> None:  # type: ignore[no-untyped-def]
    from werkzeug import Response

    def slow_answer(request):  # type: ignore[no-untyped-def]
        clock.advance(seconds=app.settings.lease_seconds / 2 + 1)
        return Response('{"ok": true}', content_type="application/json")

    httpserver.expect_request("/leads").respond_with_handler(slow_answer)
    _integrate(app, form_id, httpserver.url_for("/leads"))
    ids = _submit(app, form_id, 3)
    spilled: list[int] = []

    results = app.runner.run_batch(ids, spill=spilled.extend)

    # The first is sent; the others are given back unsent, announced again.
    assert [r.delivery_id for r in results] == ids[:1] and spilled == ids[1:]
    assert len(httpserver.log) == 1
    assert [_state(app, d) for d in ids[1:]] == [("pending", 0), ("pending", 0)]
    assert [r.delivery_id for r in app.runner.run_batch(ids[1:])] == ids[1:]


def test_a_batch_of_an_integration_that_turned_slow_goes_back_unsent(
    app: Leadrelay, form_id: int, httpserver
) -> None:  # type: ignore[no-untyped-def]
    httpserver.expect_request("/leads").respond_with_json({"ok": True})
    integration_id = _integrate(app, form_id, httpserver.url_for("/leads"))
    ids = _submit(app, form_id, 3)
    app.runner._slow.add(integration_id)  # an attempt of it was just slow
    spilled: list[int] = []

    assert app.runner.run_batch(ids, spill=spilled.extend) == []
    assert spilled == ids and httpserver.log == []
    assert {_state(app, d) for d in ids} == {("pending", 0)}


@pytest.mark.postgres
def test_a_held_connection_the_database_dropped_is_replaced(
    postgres_database: str, make_settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    app = Leadrelay(make_settings(tmp_path, postgres_database))
    try:
        acct = app.manage.create_account("Acme", "owner@acme.test")
        form = app.manage.create_form(acct.id, "Contact")
        app.submit(form.id, {"n": 1})  # the intake's held connection is open now
        app.ledger.write_connection.ping_after = 0  # ping before each use, as after a long idle
        with app.ledger.engine.connect() as admin:
            admin.execute(
                sa.text(
                    "select pg_terminate_backend(pid) from pg_stat_activity"
                    " where datname = current_database() and pid <> pg_backend_pid()"
                )
            )
            admin.commit()
        accepted = app.submit(form.id, {"n": 2})
        with app.ledger.session() as s:
            stored = s.scalars(sa.select(Lead.payload).where(Lead.form_id == form.id)).all()
        assert accepted.lead_id > 0 and sorted(p["n"] for p in stored) == [1, 2]
    finally:
        app.close()


def test_the_batch_size_follows_the_crm_s_pace(app: Leadrelay) -> None:
    from leadrelay.engine.delivery import FIRST_BATCH

    runner = app.runner
    assert runner.batch_size(1) == FIRST_BATCH  # never seen here
    runner._latency[1] = 0.002  # a CRM answering in 2 ms: 25 per batch
    runner._latency[2] = 0.2  # in 200 ms: one each, spread over all threads
    assert (runner.batch_size(1), runner.batch_size(2)) == (25, 1)


def test_a_message_larger_than_the_crm_s_pace_is_split_across_threads(
    app: Leadrelay, form_id: int, httpserver
) -> None:  # type: ignore[no-untyped-def]
    from leadrelay.engine.broker import QUEUE

    httpserver.expect_request("/leads").respond_with_json({"ok": True})
    integration_id = _integrate(app, form_id, httpserver.url_for("/leads"))
    ids = _submit(app, form_id, 4)  # no worker here: nothing announced
    app.runner._latency[integration_id] = 0.2  # a slow-paced CRM

    app.dispatcher._deliver(ids, integration_id)

    # The first is delivered in place; the other three wait as messages of one each.
    assert [_state(app, d)[0] for d in ids] == ["delivered", "pending", "pending", "pending"]
    queued = app.broker.queues[QUEUE]
    messages = [queued.get_nowait() for _ in range(queued.qsize())]
    assert len(messages) == 3 and len(httpserver.log) == 1


def test_what_a_batch_sent_before_it_was_interrupted_is_recorded(
    app: Leadrelay, form_id: int, httpserver, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import leadrelay.engine.delivery as delivery

    httpserver.expect_request("/leads").respond_with_json({"ok": True})
    _integrate(app, form_id, httpserver.url_for("/leads"))
    ids = _submit(app, form_id, 3)
    real_envelope = delivery.envelope_for

    def envelope_or_interrupt(lead, row, attempt=1):  # type: ignore[no-untyped-def]
        if row.id == ids[1]:
            raise KeyboardInterrupt  # as a time limit interrupts a worker thread
        return real_envelope(lead, row, attempt)

    monkeypatch.setattr(delivery, "envelope_for", envelope_or_interrupt)
    with pytest.raises(KeyboardInterrupt):
        app.runner.run_batch(ids)

    # The first was sent and is recorded: it will not be sent again.
    assert _state(app, ids[0]) == ("delivered", 1) and len(httpserver.log) == 1
    # The one interrupted stays claimed, its attempt on record as being sent: its lease
    # runs out and the sweeper marks it in doubt. The last was never begun: given back.
    assert [_state(app, d) for d in ids[1:]] == [("sending", 0), ("pending", 0)]
    assert [a["outcome"] for a in app.inspect(ids[1])["attempts"]] == ["sending"]
    assert app.inspect(ids[2])["attempts"] == []


def test_a_kind_of_write_has_one_writer(app: Leadrelay) -> None:
    from leadrelay.engine.delivery import _Claim

    assert app.runner is not None  # built on first use: it registers the claim's writer
    with pytest.raises(ValueError, match="_Claim already has a writer"):
        app.ledger.writes.handle(_Claim, lambda conn, items: [])


def test_leads_stored_together_each_get_their_own_deliveries(app: Leadrelay) -> None:
    from leadrelay.engine.intake import LeadIn

    account = app.manage.create_account("Multi", "owner@multi.test", plan="growth")
    two, one, none = (app.manage.create_form(account.id, name).id for name in "ABC")
    a1, a2 = _integrate(app, two), _integrate(app, two)
    b1 = _integrate(app, one)

    forms = [two, none, one, two]
    accepted = app.submit_many([LeadIn(form, {"n": n}) for n, form in enumerate(forms)])

    assert [len(a.delivery_ids) for a in accepted] == [2, 0, 1, 2]
    assert [a.integration_ids for a in accepted] == [(a1, a2), (), (b1,), (a1, a2)]
    for a in accepted:
        for delivery_id, integration_id in zip(a.delivery_ids, a.integration_ids, strict=True):
            obj = app.inspect(delivery_id)
            assert (obj["lead"]["id"], obj["integration"]["id"]) == (a.lead_id, integration_id)


def test_idempotency_keys_are_unique_and_increase(app: Leadrelay, form_id: int) -> None:
    from leadrelay.engine.intake import idempotency_key

    _integrate(app, form_id)
    keys = [app.inspect(d)["delivery"]["idempotency_key"] for d in _submit(app, form_id, 5)]
    more = [idempotency_key() for _ in range(1000)]
    assert all(len(k) == 32 and int(k, 16) >= 0 for k in keys + more)
    assert len(set(more)) == 1000
    # Increasing to the millisecond: the unique index on them grows at its end.
    assert [k[:12] for k in keys + more] == sorted(k[:12] for k in keys + more)

"""A page's post: its form read, checked and written to in the lead's own transaction.

Posts of several pages waiting at once share that transaction; each still gets its own
answer: a refused post (unknown key, origin, inactive form, missing field) its refusal,
the others their lead and deliveries. A refusal wins over a bad body, as it did when the
form was read first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import pytest
import sqlalchemy as sa

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.errors import BadInput, LeadrelayError, NotFound, Refused
from leadrelay.engine.ledger import Delivery, Lead

ORIGIN = "https://shop.example"


class _Hold(NamedTuple):
    """A write that keeps its transaction open until released (the test's first batch)."""

    release: threading.Event


def _integrate(app: Leadrelay, form_id: int) -> int:
    return app.manage.create_integration(
        form_id, active=True, connector="http_post", name=f"CRM {form_id}",
        config={"url": "https://crm.example/leads"},
    ).id


def _count(app: Leadrelay, model: Any) -> int:
    with app.ledger.transaction() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(model)).scalar_one())


def test_posts_waiting_together_share_a_transaction_and_each_gets_its_own_answer(
    app: Leadrelay, wait_for: Callable[..., None]
) -> None:
    # Given forms of every kind: two integrations, none, an inactive one, a required field
    account = app.manage.create_account("Shop", "owner@shop.test", plan="growth")
    two = app.manage.create_form(account.id, "Two", allowed_origins=[ORIGIN])
    bare = app.manage.create_form(account.id, "Bare", allowed_origins=[ORIGIN])
    closed = app.manage.create_form(account.id, "Closed", allowed_origins=[ORIGIN])
    strict = app.manage.create_form(account.id, "Strict", allowed_origins=[ORIGIN],
                                    required_fields=["phone"])
    integrations = (_integrate(app, two.id), _integrate(app, two.id))
    app.manage.update_form(closed.id, active=False)
    posts: list[tuple[str, str | None, dict[str, Any]]] = [
        (two.public_key, ORIGIN, {"email": "a@shop.test"}),
        ("fk_nosuchformatallever", ORIGIN, {"email": "b@shop.test"}),
        (bare.public_key, None, {"email": "c@shop.test"}),
        (two.public_key, "https://evil.example", {"email": "d@shop.test"}),
        (closed.public_key, ORIGIN, {"email": "e@shop.test"}),
        (strict.public_key, ORIGIN, {"email": "f@shop.test"}),
        (strict.public_key, ORIGIN, {"email": "g@shop.test", "phone": "1"}),
        (two.public_key, ORIGIN, {"email": "h@shop.test"}),
    ]
    release = threading.Event()
    app.ledger.writes.handle(_Hold, lambda conn, holds: [h.release.wait(10) for h in holds])

    def post(i: int) -> Any:
        key, origin, fields = posts[i]
        try:
            return app.posts.post_to_form(key, fields, origin=origin)
        except LeadrelayError as exc:
            return exc

    # When they arrive while a transaction is open, so that they wait together
    with ThreadPoolExecutor(len(posts) + 1) as pool:
        held = pool.submit(app.ledger.writes, _Hold(release))
        answers = [pool.submit(post, i) for i in range(len(posts))]
        wait_for(lambda: len(app.ledger.writes._live._waiting) == len(posts))
        batches = app.ledger.writes.batches
        release.set()
        held.result(10)
        results = [a.result(10) for a in answers]

    # Then they were written in one more transaction
    assert app.ledger.writes.batches == batches + 1
    # and each refused post got its own refusal
    kinds = [type(r) if isinstance(r, Exception) else "stored" for r in results]
    assert kinds == ["stored", NotFound, "stored", Refused, Refused, BadInput, "stored",
                     "stored"]
    assert "rotated" in str(results[1]) and results[3].field == "Origin"
    assert "inactive" in str(results[4]) and results[5].field == "phone"
    # while the others were stored, each with its form's deliveries and nothing more
    stored = [r for r in results if not isinstance(r, Exception)]
    assert [form.id for form, _ in stored] == [two.id, bare.id, strict.id, two.id]
    assert [p.body["deliveries"] and [d["integration_id"] for d in p.body["deliveries"]]
            for _, p in stored] == [list(integrations), [], [], list(integrations)]
    assert _count(app, Lead) == 4 and _count(app, Delivery) == 4
    for _, posted in stored:
        lead = app.lead(posted.body["lead_id"])
        assert lead["source"] == "form"
        assert sorted(d["id"] for d in lead["deliveries"]) == sorted(
            d["delivery_id"] for d in posted.body["deliveries"])


@pytest.mark.parametrize(("key", "origin", "refusal"), [
    ("fk_nosuchformatallever", None, NotFound),
    ("not-a-key", None, NotFound),
    (None, "https://evil.example", Refused),
])
def test_the_forms_refusal_comes_before_a_bad_body(
    app: Leadrelay, key: str | None, origin: str | None, refusal: type[Exception]
) -> None:
    account = app.manage.create_account("Shop", "owner@shop.test")
    form = app.manage.create_form(account.id, "Contact", allowed_origins=[ORIGIN])
    with pytest.raises(refusal):
        app.posts.post_to_form(key or form.public_key, ["not", "an", "object"], origin=origin)
    with pytest.raises(BadInput, match="payload"):
        app.posts.post_to_form(form.public_key, ["not", "an", "object"], origin=ORIGIN)
    assert _count(app, Lead) == 0


def test_concurrent_posts_to_forms_each_land_once(app: Leadrelay) -> None:
    account = app.manage.create_account("Shop", "owner@shop.test", plan="growth")
    forms = [app.manage.create_form(account.id, f"F{i}") for i in range(3)]
    for form in forms:
        _integrate(app, form.id)

    def post(i: int) -> int:
        _, posted = app.posts.post_to_form(forms[i % 3].public_key, {"n": i})
        return int(posted.body["lead_id"])

    with ThreadPoolExecutor(8) as pool:
        lead_ids = list(pool.map(post, range(150)))
    assert len(set(lead_ids)) == 150 == _count(app, Lead) == _count(app, Delivery)
    for i, lead_id in enumerate(lead_ids[:9]):
        assert app.lead(lead_id)["payload"] == {"n": i}


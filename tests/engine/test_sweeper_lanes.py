"""Which lane the sweeper puts due deliveries on: live leads on the live lane, imported
leads and replayed deliveries on the bulk lane, so a replay of a big failed collection never
takes the threads live leads need — whether announced at once or found by the sweeper."""

from __future__ import annotations

import io

from sqlalchemy import select

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.clock import FakeClock
from leadrelay.engine.imports import ImportOptions
from leadrelay.engine.ledger import Delivery, Lead
from leadrelay.engine.sweeper import Sweeper

ONE_TRY = {"max_attempts": 1}


def test_replays_and_imports_are_swept_onto_the_bulk_lane_live_leads_first(
    app: Leadrelay, form_id: int, clock: FakeClock
) -> None:
    # Given an integration to a closed port that gives up at once, and three of its
    # deliveries due: a failed one replayed, one of an imported lead, a live one
    integration = app.manage.create_integration(
        form_id, name="CRM", connector="http_post", config={"url": "http://127.0.0.1:9/"},
        retry=ONE_TRY, active=True).id
    [failed] = app.submit(form_id, {"email": "failed@example.com"}).delivery_ids
    app.deliver_due()
    assert app.inspect(failed)["delivery"]["state"] == "not_integrated"
    [replayed] = app.replay().delivery_ids
    app.imports.open(form_id, io.BytesIO(b"email\nimported@example.com\n"),
                     filename="one.csv", options=ImportOptions()).run()
    [live] = app.submit(form_id, {"email": "live@example.com"}).delivery_ids
    # When the sweeper finds them (their messages lost) once the grace period is over
    clock.advance(minutes=5)
    lanes: dict[str, list[tuple[int | None, int]]] = {"live": [], "bulk": []}
    sweeper = Sweeper(app.ledger, clock, lanes["live"].extend, bulk=lanes["bulk"].extend)
    report = sweeper.sweep()
    # Then the live lead goes to the live lane, the replay and the import to the bulk lane
    assert report.enqueued == 3
    assert lanes["live"] == [(integration, live)]
    assert sorted(d for _, d in lanes["bulk"]) == sorted([replayed, *_imported(app)])


def _imported(app: Leadrelay) -> list[int]:
    """The deliveries of imported leads."""
    with app.ledger.session() as s:
        return list(s.scalars(select(Delivery.id).join(Lead, Lead.id == Delivery.lead_id)
                              .where(Lead.import_id.is_not(None))))

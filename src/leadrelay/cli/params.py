"""Option types and option sets shared by several verbs.

``JSON|@file`` values, ids, points in time (``2026-11-27T08:00`` or ``2h`` ago), and
the delivery filters ``deliveries`` and ``replay`` have in common.
"""

from __future__ import annotations

import decimal
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from leadrelay.engine.report import DeliveryFilter

F = TypeVar("F", bound=Callable[..., Any])

#: Delivery states and attempt outcomes, as the engine names them.
STATES = ("pending", "sending", "delivered", "not_integrated", "held", "discarded")
OUTCOMES = ("accepted", "rejected", "transient", "throttled", "proxy_error", "refused_target")

#: Ids are 64-bit on every backend: a larger one is a usage error, never a database's.
MAX_ID = 2**63 - 1
#: Integers this long are read exactly anyway (Python's own limit is 4,300 digits), so the
#: engine can name the field it refuses; longer ones are refused while reading.
MAX_NUMBER_DIGITS = 20_000

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def load_json(text: str) -> Any:
    """Parse JSON text; :class:`ValueError` with a one-line reason when it cannot be read.

    Besides malformed JSON, nesting too deep for the parser and numbers longer than
    Python converts are reasons too, not crashes: a number of 5,000 digits is read (and
    then refused by the engine, naming its field, as outside JSON's safe range).
    """
    try:
        return json.loads(text, parse_int=_integer)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def _integer(digits: str) -> int:
    if len(digits) <= 4000:
        return int(digits)
    if len(digits) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {len(digits.lstrip('-'))} digits is too long to read")
    # Not through str -> int conversion, which Python limits to 4,300 digits.
    return int(decimal.Decimal(digits))


class IdType(click.ParamType):
    """A row id: a whole number from 1 to 2^63-1 (what every ledger backend stores)."""

    name = "ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """The id as an int."""
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip()
            if not re.fullmatch(r"[+-]?\d{1,30}", text):
                self.fail(f"{_clip(text)!r} is not an id: give a whole number", param, ctx)
            number = int(text)
        if not 1 <= number <= MAX_ID:
            self.fail(f"{_clip(str(value))} is not an id: ids are whole numbers from 1 to "
                      f"{MAX_ID}", param, ctx)
        return number


def _clip(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


class JsonValue(click.ParamType):
    """A JSON document given inline, or as ``@path`` (``@-`` reads standard input)."""

    name = "JSON|@FILE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The parsed JSON value."""
        if not isinstance(value, str):
            return value
        text = value
        if value.startswith("@"):
            path = value[1:]
            try:
                text = sys.stdin.read() if path == "-" else (
                    Path(path).read_text(encoding="utf-8"))
            except OSError as exc:
                self.fail(f"cannot read {path}: {exc.strerror or exc}", param, ctx)
            except UnicodeDecodeError as exc:
                self.fail(f"cannot read {path}: not UTF-8 text (byte {exc.start})", param, ctx)
        try:
            return load_json(text)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class When(click.ParamType):
    """A point in time: ISO 8601 (``2026-11-27``, ``2026-11-27T08:00+01:00``; UTC when no
    zone is given) or a duration ago (``90s``, ``30m``, ``2h``, ``7d``, ``1w``)."""

    name = "TIME"

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        self._now = now or (lambda: datetime.now(UTC))

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        """The time as a timezone-aware datetime."""
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        ago = _AGO.match(str(value))
        if ago:
            seconds = float(ago.group(1)) * _UNIT_SECONDS[ago.group(2)]
            return self._now() - timedelta(seconds=seconds)
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(
                f"{value!r} is not a time: give ISO 8601 (2026-11-27T08:00) or an age like 2h",
                param, ctx,
            )
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


JSON_VALUE = JsonValue()
ID = IdType()
WHEN = When()


def filter_options(f: F) -> F:
    """The delivery filters: integration, form, account, time window, reason, outcome."""
    options = [
        click.option("--integration", "integration_id", type=ID, metavar="ID",
                     help="Only deliveries to this integration."),
        click.option("--form", "form_id", type=ID, metavar="ID",
                     help="Only leads of this form."),
        click.option("--account", "account_id", type=ID, metavar="ID",
                     help="Only leads of this account's forms."),
        click.option("--since", type=WHEN,
                     help="From this time (ISO 8601, or an age like 2h). Failed deliveries "
                          "are dated by when they failed, others by when the lead came."),
        click.option("--until", type=WHEN, help="Up to this time (same forms as --since)."),
        click.option("--reason", metavar="TEXT",
                     help="Only deliveries whose last reason contains TEXT."),
        click.option("--outcome", type=click.Choice(OUTCOMES),
                     help="Only deliveries whose last attempt ended so."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def delivery_filter(
    *, state: str | None = None, limit: int | None = None, **options: Any
) -> DeliveryFilter:
    """A :class:`~leadrelay.engine.report.DeliveryFilter` from the parsed filter options."""
    from leadrelay.engine.report import DeliveryFilter

    return DeliveryFilter(
        state=state,
        integration_id=options.get("integration_id"),
        form_id=options.get("form_id"),
        account_id=options.get("account_id"),
        since=options.get("since"),
        until=options.get("until"),
        reason=options.get("reason"),
        outcome=options.get("outcome"),
        limit=limit or None,
    )

"""The failure digest: each run claims the windows that closed and sends what is due.

One run (the scheduler's digest job, every minute):

1. digests left ``sending`` by a sender that died are marked ``in_doubt`` (never resent);
2. for each account, the windows that closed since its last claimed one (at most
   :data:`CATCH_UP` back) are counted; one with failures is claimed in the ledger, one
   without is remembered and skipped — no failures, no email;
3. every claimed digest due for a try is taken (one conditional update: one sender), built
   from the ledger as it stands, and sent. A server that cannot be reached or says "later"
   leaves it claimed for the next try (:attr:`Digests.retry_after`), so it is sent late,
   with its own window; a refusal counts, and after ``LEADRELAY_DIGEST_ATTEMPTS`` of them
   the digest is ``failed``; an answer that never came leaves it ``in_doubt``.

``--send-now`` does the same for the current window, up to now; ``--preview`` builds that
digest and records nothing. Nothing here runs on a delivery's path: a slow or absent SMTP
server holds one scheduler thread, never a worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import make_msgid
from typing import Any

from ..clock import Clock
from ..errors import ConfigError, NotFound
from ..ledger import Digest, DigestState, Ledger
from ..settings import Settings
from .book import DigestBook, Owner
from .content import DigestContent, build_content, count_failures
from .render import Rendered, iso, render
from .smtp import SmtpInDoubt, SmtpRefused, SmtpServer, SmtpUnavailable
from .windows import TICK, Window, closed_since, last_closed, length_of, window_at

log = logging.getLogger(__name__)

#: Closed windows looked at per account, newest first: a scheduler stopped across one
#: window's end still sends it when it comes back.
CATCH_UP = 2
#: Empty windows remembered per process before the memory starts afresh.
_EMPTY_MEMORY = 100_000


@dataclass(frozen=True)
class DigestResult:
    """Where one account's digest stands after a run or ``--send-now``.

    ``state`` is the digest's (:class:`~leadrelay.engine.ledger.DigestState`), or ``empty``
    when the window had no failure and nothing was claimed.
    """

    account_id: int
    window: Window
    state: str
    recipient: str
    message_id: str | None = None
    failures: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"account_id": self.account_id, "window_start": iso(self.window.start),
                "window_end": iso(self.window.end), "state": self.state,
                "recipient": self.recipient, "message_id": self.message_id,
                "failures": self.failures, "error": self.error}


@dataclass(frozen=True)
class Preview:
    """What ``--send-now`` would send for one account now (``rendered`` ``None``: nothing)."""

    account_id: int
    account_name: str
    recipient: str
    content: DigestContent
    rendered: Rendered | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the counts, the subject and both parts."""
        c, r = self.content, self.rendered
        return {
            "account_id": self.account_id, "account_name": self.account_name,
            "recipient": self.recipient, "window_start": iso(c.window.start),
            "window_end": iso(c.window.end), "failures": c.total, "given_up": c.given_up,
            "retrying": c.retrying,
            "integrations": [
                {"id": i.id, "name": i.name, "given_up": i.given_up.count,
                 "retrying": i.retrying.count, "failing_every_attempt": i.failing_every_attempt}
                for i in c.integrations
            ],
            "subject": r.subject if r else None, "text": r.text if r else None,
            "html": r.html if r else None,
            "replay_command": r.replay.command if r and c.given_up else None,
            "replay_api": r.replay.api_body if r and c.given_up else None,
        }


def describe(row: Digest) -> dict[str, Any]:
    """One digest of the history, JSON-ready."""
    return {
        "id": row.id, "account_id": row.account_id, "window_start": iso(row.window_start),
        "window_end": iso(row.window_end), "state": row.state, "recipient": row.recipient,
        "message_id": row.message_id, "failures": row.failures, "attempts": row.attempts,
        "refusals": row.refusals, "claimed_at": iso(row.claimed_at),
        "sent_at": iso(row.sent_at) if row.sent_at else None,
        "next_try_at": iso(row.next_try_at) if row.next_try_at else None,
        "last_error": row.last_error,
    }


class Digests:
    """The failure digest of every account: claimed in the ledger, sent over SMTP."""

    def __init__(
        self,
        ledger: Ledger,
        clock: Clock,
        settings: Settings,
        *,
        retry_after: timedelta = timedelta(minutes=5),
        sending_lease: timedelta = timedelta(minutes=10),
    ) -> None:
        self.ledger, self.clock, self.settings = ledger, clock, settings
        self.book = DigestBook(ledger)
        #: The SMTP server, or ``None``: no ``LEADRELAY_SMTP_URL``, no digest is sent.
        self.smtp = SmtpServer.parse(settings.smtp_url) if settings.smtp_url else None
        #: How long a digest the server could not take waits before its next try.
        self.retry_after = retry_after
        #: How long a digest may stay ``sending`` before it is taken as in doubt.
        self.sending_lease = sending_lease
        self._empty: set[tuple[int, datetime, datetime]] = set()
        self._said_unconfigured = False

    # -- the scheduler's job ----------------------------------------------------------

    def run(self) -> list[DigestResult]:
        """One run: claim the windows that closed, send every digest due."""
        if self.smtp is None:
            if not self._said_unconfigured:
                log.info("no LEADRELAY_SMTP_URL: failure digests are not sent")
                self._said_unconfigured = True
            return []
        now = self.clock.now()
        stale = self.book.abandon_stale(now, older_than=self.sending_lease)
        if stale:
            log.warning("%d digests were left sending by a stopped sender: marked in doubt, "
                        "not sent again", stale)
        owners = self.book.owners()
        covered = self.book.covered_until()
        for owner in owners:
            hours = self._hours(owner)
            newest = last_closed(now, hours)
            floor = newest.start - length_of(hours) * (CATCH_UP - 1)
            after = max(floor, covered.get(owner.id, floor))
            for window in closed_since(after, now, hours):
                self._claim(owner, window, now)
        by_id = {o.id: o for o in owners}
        return [r for d in self.book.due(now) if (r := self._try(d, by_id, now)) is not None]

    # -- on demand --------------------------------------------------------------------

    def send_now(self, account_id: int | None = None) -> list[DigestResult]:
        """Send each account's (or one account's) digest of the current window, up to now,
        after any closed window still unsent."""
        if self.smtp is None:
            raise ConfigError("LEADRELAY_SMTP_URL: not set, so no digest can be sent "
                              "(smtp://host:port)", field="LEADRELAY_SMTP_URL")
        now = self.clock.now()
        owners = self._owners(account_id)
        covered = self.book.covered_until([o.id for o in owners])
        results: list[DigestResult] = []
        for owner in owners:
            hours = self._hours(owner)
            floor = last_closed(now, hours).start - length_of(hours) * (CATCH_UP - 1)
            after = max(floor, covered.get(owner.id, floor))
            for window in closed_since(after, now, hours):
                self._claim(owner, window, now)
                after = window.end
            # Up to and including now: what failed at this very instant is in it.
            current = Window(max(after, window_at(now, hours).start), now + TICK)
            if current.start < current.end and not self._claim(owner, current, now):
                results.append(DigestResult(owner.id, current, "empty", owner.email))
            for digest in self.book.due(now, owner.id, force=True):
                result = self._try(digest, {owner.id: owner}, now, force=True)
                if result is not None:
                    results.append(result)
        return results

    def preview(self, account_id: int | None = None) -> list[Preview]:
        """What :meth:`send_now` would send for the current window; sends and records nothing."""
        now = self.clock.now()
        owners = self._owners(account_id)
        covered = self.book.covered_until([o.id for o in owners])
        out = []
        for owner in owners:
            current = window_at(now, self._hours(owner))
            window = Window(max(current.start, min(covered.get(owner.id, current.start), now)),
                            now + TICK)
            content = self._content(owner, window, now)
            rendered = render(content, public_url=self.settings.public_url) if content.total \
                else None
            out.append(Preview(owner.id, owner.name, owner.email, content, rendered))
        return out

    def history(self, account_id: int | None = None, *, limit: int = 100) -> list[dict[str, Any]]:
        """Digests claimed (sent or not), newest window first."""
        if account_id is not None:
            self._owners(account_id)
        return [describe(row) for row in self.book.history(account_id, limit=limit)]

    # -- inside -----------------------------------------------------------------------

    def _hours(self, owner: Owner) -> float:
        return owner.hours or self.settings.digest_hours

    def _owners(self, account_id: int | None) -> list[Owner]:
        owners = self.book.owners(account_id)
        if account_id is not None and not owners:
            raise NotFound(f"account {account_id} does not exist", field="account_id")
        return owners

    def _content(self, owner: Owner, window: Window, now: datetime) -> DigestContent:
        with self.ledger.session() as s:
            return build_content(s, account_id=owner.id, account_name=owner.name,
                                 window=window, now=now)

    def _claim(self, owner: Owner, window: Window, now: datetime) -> bool:
        """Claim ``window`` if it has failures; whether there is a digest for it now."""
        key = (owner.id, window.start, window.end)
        if key in self._empty:
            return False
        with self.ledger.session() as s:
            failures = count_failures(s, owner.id, window)
        if not failures:
            if len(self._empty) >= _EMPTY_MEMORY:
                self._empty.clear()
            self._empty.add(key)
            return False
        domain = self.settings.digest_from.rsplit("@", 1)[1]
        message_id = make_msgid(f"digest.{owner.id}.{window.start:%Y%m%d%H%M%S}", domain)
        row = self.book.claim(owner, window, message_id=message_id, now=now, failures=failures)
        if row is not None:
            log.info("digest of account %d for %s claimed: %d failures", owner.id, window,
                     failures)
        return True

    def _try(self, digest: Digest, owners: dict[int, Owner], now: datetime, *,
             force: bool = False) -> DigestResult | None:
        """Send one claimed digest, if this process wins its try."""
        assert self.smtp is not None
        if not self.book.begin_try(digest.id, now, force=force):
            return None  # another scheduler is sending it
        window = Window(digest.window_start, digest.window_end)
        owner = owners.get(digest.account_id) or self.book.owners(digest.account_id)[0]

        def result(state: DigestState | str, failures: int = 0,
                   error: str | None = None) -> DigestResult:
            return DigestResult(digest.account_id, window, str(state), digest.recipient,
                                digest.message_id, failures, error)

        try:
            content = self._content(owner, window, now)
            if not content.total:
                why = "nothing left to report: what it counted was delivered since"
                self.book.finish(digest.id, DigestState.SKIPPED, last_error=why, failures=0)
                return result(DigestState.SKIPPED, 0, why)
            message = render(content, public_url=self.settings.public_url).message(
                sender=self.settings.digest_from, recipient=digest.recipient,
                message_id=digest.message_id, date=now)
            self.smtp.send(message, sender=self.settings.digest_from,
                           recipient=digest.recipient)
        except SmtpInDoubt as exc:
            log.warning("digest %s to %s: %s", digest.message_id, digest.recipient, exc.reason)
            self.book.finish(digest.id, DigestState.IN_DOUBT, last_error=exc.reason,
                             failures=content.total)
            return result(DigestState.IN_DOUBT, content.total, exc.reason)
        except SmtpRefused as exc:
            state = self.book.refused(digest.id, now=now, error=exc.reason,
                                      limit=self.settings.digest_attempts,
                                      retry_at=now + self.retry_after)
            log.warning("digest %s to %s refused (%s): %s", digest.message_id, digest.recipient,
                        "given up" if state is DigestState.FAILED else "tried again later",
                        exc.reason)
            return result(state, content.total, exc.reason)
        except Exception as exc:
            # Unreachable server, a "try later", or anything unforeseen: nothing was
            # accepted, the window waits for the next try.
            reason = exc.reason if isinstance(exc, SmtpUnavailable) else (
                f"could not send: {type(exc).__name__}: {exc}")
            if not isinstance(exc, SmtpUnavailable):
                log.exception("digest %s: unexpected error", digest.message_id)
            log.warning("digest %s to %s not sent, tried again after %s: %s",
                        digest.message_id, digest.recipient, now + self.retry_after, reason)
            self.book.finish(digest.id, DigestState.CLAIMED, last_error=reason,
                             next_try_at=now + self.retry_after)
            return result(DigestState.CLAIMED, 0, reason)
        self.book.finish(digest.id, DigestState.SENT, sent_at=self.clock.now(),
                         failures=content.total, last_error=None)
        log.info("digest %s sent to %s: %d failures of %s", digest.message_id,
                 digest.recipient, content.total, window)
        return result(DigestState.SENT, content.total)

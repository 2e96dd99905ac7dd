"""The digest as an email: subject, plain text, HTML, and what to run to replay.

Rendered with the standard library alone — ``html.escape`` and string building — into
one ``EmailMessage`` with a plain-text part and an HTML alternative. The HTML is plain
on purpose: headings, lists and one table with header cells, no images, no scripts,
one small style block, readable with styles off and by a screen reader.

Every text that comes from a user or a CRM (names, reasons, answers) is escaped in the
HTML and flattened to one line in headers, so nothing in a lead or an answer can add a
header or markup.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from html import escape
from urllib.parse import urlencode

from .content import DigestContent, IntegrationPart, ReasonGroup, Sample, Tally, Unrouted
from .windows import Window

#: Where the API's links point when ``LEADRELAY_PUBLIC_URL`` is unset.
NO_PUBLIC_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Replay:
    """The CLI command and the API call that replay a digest's given-up deliveries."""

    command: str
    api_body: dict[str, object]
    curl: str


@dataclass(frozen=True)
class Rendered:
    """A digest ready to send or to preview."""

    subject: str
    text: str
    html: str
    replay: Replay

    def message(self, *, sender: str, recipient: str, message_id: str,
                date: datetime) -> EmailMessage:
        """The email: both parts, with the Message-ID recorded before sending."""
        msg = EmailMessage()
        msg["Subject"] = self.subject
        msg["From"] = sender
        msg["To"] = recipient
        msg["Date"] = format_datetime(date.astimezone(UTC))
        msg["Message-ID"] = message_id
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
        msg.set_content(self.text)
        msg.add_alternative(self.html, subtype="html")
        return msg


def render(content: DigestContent, *, public_url: str | None) -> Rendered:
    """Subject, text and HTML of ``content``."""
    base = public_url or NO_PUBLIC_URL
    replay = replay_for(content, base=base)
    return Rendered(subject_of(content), _text(content, replay, base),
                    _html(content, replay, base), replay)


def subject_of(content: DigestContent) -> str:
    """``leadrelay: 42 failed deliveries for Acme (2026-01-01 06:00 to 2026-01-01 12:00 UTC)``."""
    parts = []
    count = content.deliveries
    if count or not content.unrouted_count:
        parts.append(f"{count} {'failed delivery' if count == 1 else 'failed deliveries'}")
    if content.unrouted_count:
        n = content.unrouted_count
        parts.append(f"{n} {'lead' if n == 1 else 'leads'} not routed")
    return (f"leadrelay: {', '.join(parts)} for {_line(content.account_name)} "
            f"({content.window})")


def replay_for(content: DigestContent, *, base: str, integration: int | None = None) -> Replay:
    """How to replay the window's given-up deliveries (of one integration, or all)."""
    since, until = iso(content.window.start), iso(content.window.last_instant)
    scope = (["--integration", str(integration)] if integration is not None
             else ["--account", str(content.account_id)])
    command = shlex.join(["leadrelay", "replay", *scope, "--since", since, "--until", until])
    body: dict[str, object] = {"since": since, "until": until}
    if integration is not None:
        body = {"integration_id": integration, **body}
    curl = shlex.join([
        "curl", "-X", "POST", f"{base}/v1/replays",
        "-H", "Authorization: Bearer YOUR_ACCOUNT_KEY",
        "-H", "Content-Type: application/json",
        "-d", json.dumps(body),
    ])
    return Replay(command, body, curl)


def failed_collection_url(base: str, integration: int, window: Window) -> str:
    """The API's failed collection of one integration, for the window."""
    query = urlencode({"integration_id": integration, "since": iso(window.start),
                       "until": iso(window.last_instant)})
    return f"{base}/v1/deliveries/failed?{query}"


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, to the microsecond when there is one."""
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


# -- plain text --------------------------------------------------------------------------


def _text(c: DigestContent, replay: Replay, base: str) -> str:
    out = [
        f"Failure digest for {_line(c.account_name)} (account {c.account_id})",
        f"Window: {c.window}",
        "",
        _summary(c),
    ]
    if c.first_at and c.last_at:
        out.append(f"First failure {_when(c.first_at)}, last {_when(c.last_at)}.")
    failing = [i for i in c.integrations if i.failing_every_attempt]
    if failing:
        out += ["", "FAILING EVERY ATTEMPT"]
        out += [f"- {_title(i)}: {_failing_for(i, c.built_at)}" for i in failing]
    for part in c.integrations:
        out += ["", f"== {_title(part)} =="]
        out += _tally_text("Given up (in the failed collection)", part.given_up)
        out += _tally_text("Still being retried", part.retrying)
        if part.given_up.count:
            out.append(f"Failed collection: {failed_collection_url(base, part.id, c.window)}")
            out.append("Replay: " + replay_for(c, base=base, integration=part.id).command)
    if c.other_integrations:
        out += ["", f"... and {c.other_integrations} more integrations: "
                    f"{c.other_given_up} given up, {c.other_retrying} still being retried."]
    if c.unrouted_count:
        out += ["", f"LEADS NOT ROUTED: {c.unrouted_count} (no delivery yet: kept, not lost)"]
        out += [f"- {u.count} x {_unrouted(u)} ({_when(u.first_at)} to {_when(u.last_at)})"
                for u in c.unrouted]
        if c.other_unrouted:
            out.append(f"- and {c.other_unrouted} more for other reasons")
        out += [f"See them: {_unrouted_command(c)}", _UNROUTED_TODO]
    out += ["", "WHAT TO DO"]
    if c.given_up:
        out += [
            "Fix the cause (the integration's config, its expectations, or the CRM), then "
            f"replay the {c.given_up} given-up deliveries of this window:",
            f"  {replay.command}",
            "or through the API, with an account key:",
            f"  {replay.curl}",
            "Add --dry-run (API: \"dry_run\": true) to see what would be sent first.",
        ]
    if c.retrying:
        out.append("Deliveries still being retried need nothing yet: each one that fails its "
                   "last attempt joins the failed collection and the next digest.")
    out += ["", f"You receive this as the owner of {_line(c.account_name)}. "
                "No failures in a window, no email."]
    return "\n".join(out) + "\n"


def _tally_text(label: str, tally: Tally) -> list[str]:
    if not tally.count:
        return []
    out = [f"{label}: {tally.count}{_span(tally)}"]
    for g in tally.reasons:
        out.append(f"  - {g.count} x {_reason(g)} ({_when(g.first_at)} to {_when(g.last_at)})")
        if g.sample:
            out.append(f"      sample answer: {_sample(g.sample)}")
    if tally.other_reasons:
        out.append(f"  - and {tally.other_reasons} more reasons ({tally.other_count} deliveries)")
    return out


# -- HTML --------------------------------------------------------------------------------

_STYLE = ("body{font-family:sans-serif;line-height:1.4;max-width:46em;margin:1em auto;"
          "padding:0 1em;color:#1a1a1a}"
          "table{border-collapse:collapse;margin:.5em 0}"
          "th,td{border:1px solid #999;padding:.25em .5em;text-align:left;vertical-align:top}"
          "code,pre{font-family:monospace;background:#f2f2f2}"
          "pre{padding:.5em;white-space:pre-wrap;overflow-wrap:anywhere}"
          ".warn{color:#8a1c00;font-weight:bold}")


def _html(c: DigestContent, replay: Replay, base: str) -> str:
    e = escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(subject_of(c))}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Failure digest for {e(_line(c.account_name))}</h1>",
        f"<p>Account {c.account_id}, window {e(str(c.window))}.</p>",
        f"<p>{e(_summary(c))}",
    ]
    if c.first_at and c.last_at:
        out.append(f" First failure {e(_when(c.first_at))}, last {e(_when(c.last_at))}.")
    out.append("</p>")
    failing = [i for i in c.integrations if i.failing_every_attempt]
    if failing:
        out.append("<h2>Failing every attempt</h2><ul>")
        out += [f'<li><span class="warn">{e(_title(i))}</span>: '
                f"{e(_failing_for(i, c.built_at))}</li>" for i in failing]
        out.append("</ul>")
    out.append("<h2>Integrations</h2>")
    out.append("<table><caption>Failed deliveries per integration</caption><thead><tr>"
               '<th scope="col">Integration</th><th scope="col">Given up</th>'
               '<th scope="col">Still retrying</th><th scope="col">First failure</th>'
               '<th scope="col">Last failure</th></tr></thead><tbody>')
    for part in c.integrations:
        out.append(f'<tr><th scope="row">{e(_title(part))}</th><td>{part.given_up.count}</td>'
                   f"<td>{part.retrying.count}</td><td>{e(_when(part.first_at))}</td>"
                   f"<td>{e(_when(part.last_at))}</td></tr>")
    if c.other_integrations:
        out.append(f'<tr><th scope="row">{c.other_integrations} more integrations</th>'
                   f"<td>{c.other_given_up}</td><td>{c.other_retrying}</td>"
                   "<td></td><td></td></tr>")
    out.append("</tbody></table>")
    if c.unrouted_count:
        out.append(f"<h2>Leads not routed: {c.unrouted_count}</h2>"
                   "<p>No delivery yet: kept, not lost.</p><ul>")
        out += [f"<li>{u.count} &times; <code>{e(_unrouted(u))}</code> "
                f"({e(_when(u.first_at))} to {e(_when(u.last_at))})</li>" for u in c.unrouted]
        if c.other_unrouted:
            out.append(f"<li>and {c.other_unrouted} more for other reasons</li>")
        out.append(f"</ul><p>See them: <code>{e(_unrouted_command(c))}</code>. "
                   f"{e(_UNROUTED_TODO)}</p>")
    for part in c.integrations:
        out.append(f"<h3>{e(_title(part))}</h3>")
        out += _tally_html("Given up (in the failed collection)", part.given_up)
        out += _tally_html("Still being retried", part.retrying)
        if part.given_up.count:
            url = failed_collection_url(base, part.id, c.window)
            command = replay_for(c, base=base, integration=part.id).command
            out.append(f'<p><a href="{e(url)}">Failed collection of this integration</a>'
                       f" (API, account key). Replay: <code>{e(command)}</code></p>")
    out.append("<h2>What to do</h2>")
    if c.given_up:
        out += [
            "<p>Fix the cause (the integration's config, its expectations, or the CRM), then "
            f"replay the {c.given_up} given-up deliveries of this window:</p>",
            f"<pre>{e(replay.command)}</pre>",
            "<p>or through the API, with an account key:</p>",
            f"<pre>{e(replay.curl)}</pre>",
            "<p>Add <code>--dry-run</code> (API: <code>\"dry_run\": true</code>) to see what "
            "would be sent first.</p>",
        ]
    if c.retrying:
        out.append("<p>Deliveries still being retried need nothing yet: each one that fails "
                   "its last attempt joins the failed collection and the next digest.</p>")
    out.append(f"<p><small>You receive this as the owner of {e(_line(c.account_name))}. "
               "No failures in a window, no email.</small></p></body></html>")
    return "\n".join(out) + "\n"


def _tally_html(label: str, tally: Tally) -> list[str]:
    if not tally.count:
        return []
    e = escape
    out = [f"<p><strong>{e(label)}: {tally.count}</strong>{e(_span(tally))}</p><ul>"]
    for g in tally.reasons:
        item = (f"<li>{g.count} &times; <code>{e(_reason(g))}</code> "
                f"({e(_when(g.first_at))} to {e(_when(g.last_at))})")
        if g.sample:
            item += f"<br>Sample answer: <code>{e(_sample(g.sample))}</code>"
        out.append(item + "</li>")
    if tally.other_reasons:
        out.append(f"<li>and {tally.other_reasons} more reasons "
                   f"({tally.other_count} deliveries)</li>")
    out.append("</ul>")
    return out


# -- shared phrases ----------------------------------------------------------------------


def _summary(c: DigestContent) -> str:
    text = (f"{c.deliveries} deliveries failed: {c.given_up} given up (in the failed "
            f"collection), {c.retrying} still being retried.")
    if c.unrouted_count:
        text += f" {c.unrouted_count} leads were not routed to a form's integrations."
    return text


_UNROUTED_TODO = ("A Graph read that gave up (not_read) is read again with 'leadrelay facebook "
                  "read-again CONNECTION_ID' once its page token works; a lead of an unmapped "
                  "Facebook form (unroutable) is read and routed as soon as that form is mapped "
                  "('leadrelay facebook update CONNECTION_ID --form FB_FORM_ID=FORM_ID').")


def _unrouted(u: Unrouted) -> str:
    what = ("Facebook Lead Ads: the Graph read gave up" if u.state == "not_read"
            else "Facebook Lead Ads: no form mapped")
    return f"{what}: {_line(u.reason)}" if u.reason else what


def _unrouted_command(c: DigestContent) -> str:
    return f"leadrelay facebook leads --account {c.account_id}"


def _title(part: IntegrationPart) -> str:
    return (f"{_line(part.name)} (integration {part.id}, form {part.form_id} "
            f"{_line(part.form_name)})")


def _failing_for(part: IntegrationPart, now: datetime) -> str:
    if part.last_success is None:
        return (f"no lead accepted yet; failing since {_when(part.first_at)} "
                f"({_duration(now - part.first_at)})")
    return (f"no lead accepted since {_when(part.last_success)} "
            f"({_duration(now - part.last_success)})")


def _span(tally: Tally) -> str:
    if tally.first_at is None or tally.last_at is None:
        return ""
    return f" (first {_when(tally.first_at)}, last {_when(tally.last_at)})"


def _reason(g: ReasonGroup) -> str:
    return f"{g.outcome}: {g.reason}" if g.outcome else g.reason


def _sample(sample: Sample) -> str:
    head = f"delivery {sample.delivery_id}, attempt {sample.attempt}: "
    if sample.status is not None:
        body = sample.body or "(empty body)"
        return head + f"HTTP {sample.status} {body}"
    return head + (sample.error or "no answer")


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(span: timedelta) -> str:
    minutes = max(int(span.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    if hours or days:
        parts.append(f"{hours} h")
    if not days:
        parts.append(f"{mins} min")
    return "for " + " ".join(parts)


def _line(text: str) -> str:
    """One line of at most 200 characters: no newline can leave a header or a title."""
    return " ".join(text.split())[:200]

"""Secrets redacted in every form they take (engine/secrets.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from urllib.parse import quote, quote_plus
from xml.sax.saxutils import escape

import pytest

from leadrelay.engine.outcome import Outcome, Verdict
from leadrelay.engine.secrets import (
    MASK,
    Redactor,
    SecretLogFilter,
    mask_userinfo,
    redact_stored,
    remember,
)

SECRET = 'p&ss<w>"rd/+1 é'


@pytest.mark.parametrize("form", [
    SECRET,
    quote(SECRET, safe=""),
    quote(SECRET, safe="").lower(),
    quote_plus(SECRET),
    base64.b64encode(SECRET.encode()).decode(),
    base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
    json.dumps(SECRET)[1:-1],
    json.dumps(SECRET, ensure_ascii=False)[1:-1],
    escape(SECRET),
    escape(SECRET, {'"': "&quot;"}),
    SECRET.encode().hex(),
    hashlib.md5(SECRET.encode()).hexdigest(),
    hashlib.sha256(SECRET.encode()).hexdigest().upper(),
])
def test_every_form_of_a_secret_is_masked(form: str) -> None:
    assert Redactor([SECRET]).text(f"before {form} after") == f"before {MASK} after"


def test_basic_auth_is_masked_in_its_base64_user_password_form() -> None:
    from leadrelay.connectors.http_post.connector import HttpPostConfig
    from leadrelay.engine.secrets import secret_values

    config = HttpPostConfig.model_validate({"url": "https://crm.example/", "auth": {
        "type": "basic", "username": "api", "password": "hunter2"}})
    header = base64.b64encode(b"api:hunter2").decode()
    assert Redactor(secret_values(config)).text(f"echo: Basic {header}") == f"echo: Basic {MASK}"


def test_values_learnt_later_are_masked_in_every_form_too() -> None:
    redactor = Redactor(["first-secret"]).extend(["session-00D!AQ"])
    assert redactor.text(quote("session-00D!AQ", safe="")) == MASK
    assert redactor.text("first-secret") == MASK


def test_a_crm_reference_that_holds_a_secret_is_masked() -> None:
    verdict = Verdict(Outcome.ACCEPTED, "ok", crm_reference="ref-Bearer tok_123456")
    assert verdict.redacted(Redactor(["tok_123456"]).text).crm_reference == f"ref-Bearer {MASK}"


def test_url_credentials_are_masked_in_text_and_stored_configs() -> None:
    assert mask_userinfo("to https://user:pw@crm.example/x?a=b@c") == (
        f"to https://{MASK}@crm.example/x?a=b@c")
    assert redact_stored({"url": "http://token@crm.example/", "n": 1}) == {
        "url": f"http://{MASK}@crm.example/", "n": 1}
    assert Redactor().text("http://u:p@h/") == f"http://{MASK}@h/"


def test_log_records_are_redacted_with_the_live_redactors() -> None:
    redactor = remember(Redactor(["tok_987654"]))
    record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1,
                               '%s://%s:%s "%s %s %s" %s %s',
                               ("https", "crm.example", 443, "POST",
                                "/leads?api_token=anything", "HTTP/1.1", 200, 2), None)
    assert SecretLogFilter().filter(record)
    assert record.getMessage() == (
        f'https://crm.example:443 "POST /leads?{MASK} HTTP/1.1" 200 2')
    other = logging.LogRecord("leadrelay.x", logging.INFO, __file__, 1, "sent %s",
                              (base64.b64encode(b"tok_987654").decode(),), None)
    SecretLogFilter().filter(other)
    assert other.getMessage() == f"sent {MASK}"
    del redactor

"""Secrets given in an integration's config reach the CRM and are never printed."""

from __future__ import annotations

import json

from pytest_httpserver import HTTPServer

from leadrelay.engine.app import Leadrelay

from .helpers import LEAD, ONE_TRY, Cli

BEARER = "eyJ0eXAi-bearer-secret-0001"
API_KEY = "sk-live-header-secret-0002"
TOKEN = "query-token-secret-0003"
SECRETS = (BEARER, API_KEY, TOKEN)


def test_secrets_never_appear_in_any_output(
    cli: Cli, form: int, engine: Leadrelay, httpserver: HTTPServer
) -> None:
    # Given an integration holding a bearer token, a secret header and a secret query
    # parameter, whose CRM rejects the lead (so there is a failure to replay)
    httpserver.expect_request("/leads").respond_with_data("nope", status=400)
    config = {
        "url": httpserver.url_for("/leads"),
        "auth": {"type": "bearer", "token": BEARER},
        "secret_headers": {"X-Api-Key": API_KEY},
        "secret_query": {"api_token": TOKEN},
        "headers": {"X-Source": "leadrelay"},
    }
    outputs = [cli("integrations", "create", "--form", str(form), "--name", "CRM",
                   "--connector", "http_post", "--config", json.dumps(config), "--active",
                   "--retry", json.dumps(ONE_TRY), "--json").stdout]
    integration = str(json.loads(outputs[0])["id"])
    delivery = str(cli.json("submit", "--form", str(form), "--json", json.dumps(LEAD))[
        "delivery_ids"][0])

    # When the lead is delivered
    engine.deliver_due()

    # Then the CRM got every secret
    request = httpserver.log[0][0]
    assert request.headers["Authorization"] == f"Bearer {BEARER}"
    assert request.headers["X-Api-Key"] == API_KEY
    assert request.args["api_token"] == TOKEN

    # and no output shows any of them
    outputs += [
        cli("integrations", "show", integration).stdout,
        cli("integrations", "list").stdout,
        cli("integrations", "list", "--json").stdout,
        cli("integrations", "update", integration, "--name", "CRM 2", "--json").stdout,
        cli("inspect", delivery).stdout,
        cli("deliveries").stdout,
        cli("deliveries", "--json").stdout,
        cli("replay", "--dry-run").stdout,
        cli("replay", "--dry-run", "--json").stdout,
    ]
    for output in outputs:
        for secret in SECRETS:
            assert secret not in output
    shown = cli.json("integrations", "show", integration)["config"]
    assert shown["auth"]["token"] == "[REDACTED]"
    assert shown["secret_headers"] == {"X-Api-Key": "[REDACTED]"}
    assert shown["secret_query"] == {"api_token": "[REDACTED]"}
    assert shown["headers"] == {"X-Source": "leadrelay"}
    sent = cli.json("inspect", delivery)["attempts"][0]["exchanges"][0]["request"]
    assert sent["headers"]["Authorization"] == "[REDACTED]"
    assert sent["url"].endswith("api_token=[REDACTED]")

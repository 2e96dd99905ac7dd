"""``leadrelay facebook``: a page connected from the command line, secrets never printed."""

from __future__ import annotations

import json
from collections.abc import Callable

from leadrelay.engine.app import Leadrelay
from leadrelay.facebook import sign

from .helpers import Cli

SECRETS = ("app-s3cret-value", "verify-t0ken-value", "EAAG-page-token-value")


def test_a_page_is_connected_with_secrets_asked_for_and_never_printed(cli: Cli,
                                                                       form: int) -> None:
    # Given the secrets typed at the hidden prompts
    made = cli("facebook", "connect", "--account", "1", "--page-id", "104736952280912",
               "--form", f"1418823349021556={form}", "--field", "city=town",
               "--field", "full_name=first_name,last_name", "--json",
               input="\n".join(SECRETS) + "\n")
    page = cli.json("facebook", "show", "1")
    listed = cli("facebook", "list").stdout
    # Then the connection has the mapping, and no secret appears anywhere
    assert page["forms"] == {"1418823349021556": form}
    assert page["field_map"] == {"city": "town", "full_name": ["first_name", "last_name"]}
    assert page["webhook_url"].endswith("/v1/facebook/webhook")
    for secret in SECRETS:
        assert secret not in made.stdout + made.stderr + str(page) + listed
    # When another form is mapped and a field goes back to its default
    changed = cli.json("facebook", "update", "1", "--form", f"555={form}", "--no-field", "city",
                       "--page-access-token", "EAAG-renewed", "--json")
    assert changed["forms"] == {"1418823349021556": form, "555": form}
    assert "city" not in changed["field_map"]
    assert "EAAG-renewed" not in str(changed)
    assert "0 Facebook lead(s)" in cli("facebook", "read-again", "1").stdout
    assert "no Facebook leads" in cli("facebook", "leads", "--state", "not_read").stdout


def test_bad_setup_is_one_line_naming_what_is_wrong(cli: Cli, form: int) -> None:
    secrets = ["--app-secret", "a1b2c3", "--verify-token", "v1v2v3",
               "--page-access-token", "EAAGxyz"]
    connect = ["facebook", "connect", "--account", "1", *secrets]
    assert "page_id" in cli.error(*connect, "--page-id", "my-page")
    assert "forms.123: form 999 does not exist" in cli.error(
        *connect, "--page-id", "1", "--form", "123=999")
    assert "field_map.city" in cli.error(*connect, "--page-id", "1", "--field", "city=the town")
    assert "--form: expected FB_FORM_ID=FORM_ID" in cli.error(*connect, "--page-id", "1",
                                                              "--form", "123")
    assert "Facebook page connection 7 does not exist" in cli.error(
        "facebook", "update", "7", "--name", "x")
    assert "no connected pages" in cli("facebook", "list").stdout


def test_the_failed_collection_names_facebook_leads_whose_read_gave_up(
    cli: Cli, form: int, engine_for: Callable[..., Leadrelay], unused_port: int
) -> None:
    # Given a page whose Graph API cannot be reached, read once then given up
    app = engine_for(LEADRELAY_FACEBOOK_GRAPH_URL=f"http://127.0.0.1:{unused_port}")
    app.facebook.connect(1, "104736952280912", app_secret="a1b2c3", verify_token="v1v2v3",
                         page_access_token="EAAGxyz", forms={"900": form},
                         retry={"max_attempts": 1})
    body = json.dumps({"object": "page", "entry": [{"id": "104736952280912", "changes": [
        {"field": "leadgen", "value": {"leadgen_id": "77", "form_id": "900"}}]}]}).encode()
    app.facebook.receive(body, sign(body, "a1b2c3"))
    [read] = app.facebook.read_due()
    assert read.state == "not_read" and "Graph API unreachable" in (read.reason or "")
    # When the operator lists the failed collection
    result = cli("deliveries", "--failed")
    # Then it says where those leads are
    assert "1 Facebook lead(s) whose Graph read gave up" in result.stderr
    assert "leadrelay facebook leads --state not_read" in result.stderr
    listed = cli.json("facebook", "leads", "--state", "not_read", "--json")
    assert [r["leadgen_id"] for r in listed] == ["77"]
    assert "EAAGxyz" not in str(listed)

"""``leadrelay plugins``: the connectors this installation can use, and the ones it can't."""

from __future__ import annotations

from typing import Any

import click

from .context import settings
from .output import print_json, print_table


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def plugins_command(as_json: bool) -> None:
    """List discovered connectors and plugin problems.

    Connectors come from the entry-point group `leadrelay.connectors` (the
    built-in ones too); plugins.toml enables, disables and configures them.
    LEADRELAY_LOAD_PLUGINS=name,name limits which third-party plugins load
    (empty: none). Does not open the database.
    """
    from leadrelay.engine.plugins import Plugins

    loaded = Plugins(settings().plugins().connectors)
    connectors: list[dict[str, Any]] = [
        {"name": c.name, "plugin": c.plugin, "package": c.package, "version": c.version,
         "enabled": c.enabled, "why_not": c.why_not}
        for c in loaded.listing()
    ]
    problems = [{"plugin": p.plugin, "package": p.package, "reason": p.reason}
                for p in loaded.problems]
    if as_json:
        print_json({"connectors": connectors, "problems": problems})
        return
    print_table(
        ["connector", "package", "version", "enabled", "why not"],
        ([c["name"], c["package"], c["version"], c["enabled"], c["why_not"]]
         for c in connectors),
        title="Connectors", empty="no connectors found", flex=("why not",),
    )
    if problems:
        print_table(["plugin", "package", "problem"],
                    ([p["plugin"], p["package"], p["reason"]] for p in problems),
                    title="Problems", flex=("problem",))


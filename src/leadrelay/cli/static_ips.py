"""``leadrelay static-ips``: the egress addresses a CRM owner must allow-list, per pool."""

from __future__ import annotations

from typing import Any

import click

from .context import settings
from .output import print_json, print_table


@click.command("static-ips")
@click.option("--pool", "only", multiple=True, metavar="NAME",
              help="Only this pool (repeatable).")
@click.option("--check", is_flag=True,
              help="Also probe each proxy now (its health check) and say whether it is up.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def static_ips(only: tuple[str, ...], check: bool, as_json: bool) -> None:
    """Print the addresses CRM owners must allow-list for static-IP integrations.

    Static-IP pools are the [proxies.<pool>] tables of plugins.toml; an
    integration uses one with static_ip_pool (or a <connector>_static_ip
    connector name, which uses the pool "default"). Proxies are shown by name
    only: never their URL or credentials. Does not open the database.
    """
    from leadrelay.engine.errors import ConfigError
    from leadrelay.engine.proxies import StaticIpPools, parse_pools

    from . import CliUsageError

    try:
        table = settings().plugins().proxies
        pools = parse_pools(table)
        unknown = [name for name in only if name not in pools]
        if unknown:
            known = ", ".join(sorted(pools)) or "none"
            raise ConfigError(f"--pool: no pool named {unknown[0]!r} in plugins.toml "
                              f"(configured: {known})", field="pool")
        status: dict[str, dict[str, str | None]] = {}
        if check:
            # Resolving the pools reads the proxy passwords: a probe may need them.
            routes = StaticIpPools.from_config(table)
            status = {name: routes.pools[name].check() for name in pools
                      if not only or name in only}
    except ConfigError as exc:
        raise CliUsageError(str(exc)) from None

    listing: list[dict[str, Any]] = []
    for name, pool in sorted(pools.items()):
        if only and name not in only:
            continue
        proxies: list[dict[str, Any]] = []
        for proxy in pool.proxies:
            entry: dict[str, Any] = {"name": proxy.name, "egress_ips": list(proxy.egress_ips)}
            if check:
                why = status[name][proxy.name]
                entry["up"] = why is None
                entry["problem"] = why
            proxies.append(entry)
        listing.append({"pool": name, "egress_ips": pool.egress_ips, "proxies": proxies})

    if as_json:
        print_json({"pools": listing})
        return
    if not listing:
        click.echo("No static-IP pool is configured: declare [proxies.<pool>] in plugins.toml.")
        return
    click.echo("Allow-list these addresses on the CRM side (any proxy of a pool may carry "
               "a delivery):")
    columns = ["egress IP", "proxy", *(["status"] if check else [])]
    for pool_entry in listing:
        rows = []
        for proxy_entry in pool_entry["proxies"]:
            for ip in proxy_entry["egress_ips"]:
                row = [ip, proxy_entry["name"]]
                if check:
                    row.append("up" if proxy_entry["up"]
                               else f"down: {proxy_entry['problem']}")
                rows.append(row)
        print_table(columns, rows, title=f"pool {pool_entry['pool']}")

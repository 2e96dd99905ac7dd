"""``leadrelay new-connector NAME``: write a connector package skeleton whose tests pass.

Thin over :func:`leadrelay.templates.write_connector_package`; a bad name or an
existing directory is a :class:`~leadrelay.engine.errors.BadInput`, which the
``leadrelay`` group turns into one ``error:`` line and exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["new_connector"]


@click.command("new-connector")
@click.argument("name")
@click.option("--directory", "-d", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True,
              help="Where to create the package's directory.")
def new_connector(name: str, directory: Path) -> None:
    """Write a new connector package for NAME (like acme_crm).

    The package has a pyproject.toml with the leadrelay.connectors entry point,
    a connector module (a JSON POST with a bearer key, to adapt), a README, and
    a test file adopting leadrelay's connector contract, which passes as
    generated once the package is installed (pip install -e 'DIR[testing]').
    """
    from leadrelay.templates import write_connector_package

    root = write_connector_package(name, directory)
    click.echo(f"wrote {root}")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        click.echo(f"  {path.relative_to(root)}")
    click.echo(f"next: pip install -e '{root}[testing]' && cd {root} && pytest")

"""The connector package template, and :func:`write_connector_package` which fills it in.

``leadrelay new-connector NAME`` writes, from the ``*.tmpl`` files beside this
module, a package whose contract tests pass as generated::

    leadrelay-connector-NAME/
        pyproject.toml                  the leadrelay.connectors entry point
        README.md
        src/leadrelay_connector_NAME/
            __init__.py                 the register_connectors hook
            connector.py                the Connector and its Config
            py.typed
        tests/
            test_contract.py            adopts leadrelay's connector contract

Templates use :class:`string.Template` placeholders (``${name}``); nothing is
evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from leadrelay import __version__
from leadrelay.engine.errors import BadInput

__all__ = ["ConnectorNames", "connector_names", "write_connector_package"]

#: A connector name: lower-case words joined by ``_`` (``-`` is accepted and becomes ``_``).
NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")

#: Template file → path in the generated package (``{module}`` is filled in).
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "src/{module}/__init__.py",
    "connector.py.tmpl": "src/{module}/connector.py",
    "test_contract.py.tmpl": "tests/test_contract.py",
}


@dataclass(frozen=True)
class ConnectorNames:
    """Every name derived from the connector's name."""

    name: str
    """The connector's name, as integrations use it (``acme_crm``)."""
    distribution: str
    """The package's distribution name (``leadrelay-connector-acme-crm``)."""
    module: str
    """The import package (``leadrelay_connector_acme_crm``)."""
    class_prefix: str
    """``AcmeCrm``, for ``AcmeCrmConnector`` and ``AcmeCrmConfig``."""
    title: str
    """``Acme Crm``, for prose."""

    def placeholders(self) -> dict[str, str]:
        """The values the templates use."""
        return {
            "name": self.name, "distribution": self.distribution, "module": self.module,
            "class_prefix": self.class_prefix, "title": self.title,
            "connector_class": f"{self.class_prefix}Connector",
            "config_class": f"{self.class_prefix}Config",
            "leadrelay_version": __version__,
        }


def connector_names(raw: str) -> ConnectorNames:
    """The names for a connector called ``raw``; :class:`BadInput` naming the problem."""
    name = raw.strip().lower().replace("-", "_")
    if not NAME.match(name) or len(name) > 40:
        raise BadInput(f"name: {raw!r} is not a connector name: use lower-case letters, "
                       "digits and _ (like acme_crm), starting with a letter, at most 40",
                       field="name")
    words = name.split("_")
    return ConnectorNames(
        name=name,
        distribution="leadrelay-connector-" + "-".join(words),
        module="leadrelay_connector_" + name,
        class_prefix="".join(w.capitalize() for w in words),
        title=" ".join(w.capitalize() for w in words),
    )


def write_connector_package(raw_name: str, parent: Path) -> Path:
    """Write a new connector package for ``raw_name`` under ``parent``; return its directory.

    :raises BadInput: the name is not a connector name, or the directory exists
        and is not empty. Nothing is written then.
    """
    names = connector_names(raw_name)
    root = parent / names.distribution
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise BadInput(f"directory: {root} already exists and is not empty", field="directory")
    values = names.placeholders()
    rendered = {
        target.format(module=names.module): Template(_template(source)).substitute(values)
        for source, target in FILES.items()
    }
    for relative, text in rendered.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "src" / names.module / "py.typed").write_text("", encoding="utf-8")
    return root


def _template(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")

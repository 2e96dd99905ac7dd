"""Fixtures for the connector SDK tests: the example connector, installed with pip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sdk_install import HUBSPOT_EXAMPLE, forget_modules, pip_install

from leadrelay.engine.plugins import LOAD_PLUGINS_ENV


@pytest.fixture(scope="session")
def hubspot_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where pip installed ``examples/leadrelay-connector-hubspot``, once a session."""
    site = tmp_path_factory.mktemp("hubspot-site")
    pip_install(HUBSPOT_EXAMPLE, site)
    return site


@pytest.fixture
def hubspot_installed(hubspot_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example installed for this test only: its site on ``sys.path``, then gone."""
    monkeypatch.syspath_prepend(str(hubspot_site))
    monkeypatch.delenv(LOAD_PLUGINS_ENV, raising=False)
    try:
        yield hubspot_site
    finally:
        forget_modules("leadrelay_connector_hubspot")

"""An import interrupted midway, for the tests that resume it (engine and API)."""

from __future__ import annotations

import io

import pytest

from leadrelay.engine.app import Leadrelay
from leadrelay.engine.imports import ImportOptions, ImportReport, parse_integrate, service

#: 35 distinct leads, one per line after the header.
ROWS = b"email\n" + b"".join(f"u{i}@x.test\n".encode() for i in range(35))


class BreaksAfter200Bytes(io.BytesIO):
    """A file whose stream breaks (``OSError: disk gone``) after its first 200 bytes."""

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        if self.tell() >= 200:
            raise OSError("disk gone")
        return super().read(min(n, 100) if n and n > 0 else 100)


def interrupted_import(app: Leadrelay, form_id: int,
                       monkeypatch: pytest.MonkeyPatch) -> ImportReport:
    """Import :data:`ROWS` (integration off, 10 rows a batch) until the file breaks; the
    import as it was left."""
    monkeypatch.setattr(service, "BATCH_ROWS", 10)
    prepared = app.imports.open(form_id, BreaksAfter200Bytes(ROWS), filename="big.csv",
                                options=ImportOptions(integrate=parse_integrate("off")))
    with pytest.raises(OSError):
        prepared.run()
    assert prepared.import_id is not None
    return app.imports.get(prepared.import_id)

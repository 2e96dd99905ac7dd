"""Bulk imports: CSV and JSON Lines files stored as leads, streamed, batched, deduplicated."""

from .reading import ImportFile, Layout, Row
from .service import (
    Importer,
    ImportOptions,
    ImportReport,
    Integrate,
    PreparedImport,
    parse_integrate,
)

__all__ = [
    "ImportFile",
    "ImportOptions",
    "ImportReport",
    "Importer",
    "Integrate",
    "Layout",
    "PreparedImport",
    "Row",
    "parse_integrate",
]

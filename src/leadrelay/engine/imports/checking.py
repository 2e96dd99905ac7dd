"""One row of an import file made a lead: mapped, validated, given its external id.

This runs once per row, so it is kept to what each row needs: the column mapping is
applied only when there is one, the payload is validated by
:func:`~leadrelay.engine.leads.validate_payload` (the same rules as any lead, from any
source), and the JSON text hashed for the external id is kept for the ledger, which on
PostgreSQL can store it as it is (``jsonb`` keeps no key order nor spacing).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from ..errors import BadInput
from ..forms import check_required
from ..leads import validate_payload
from .reading import Row

#: The longest external id (the ledger's column).
MAX_EXTERNAL_ID = 200

#: A payload's canonical JSON, hashed into its external id when there is no id column.
#: Never change it: a row imported before must hash the same to be found a duplicate.
#: (``json.dumps`` with these arguments builds an encoder at each call.)
canonical_json = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode


class Checked(NamedTuple):
    """A row fit to store as a lead."""

    line: int
    payload: dict[str, Any]
    external_id: str
    #: The payload's :func:`canonical_json`, when it was computed (no id column).
    canonical: str | None


def row_hash(canonical: str) -> str:
    """The external id of a row without an id column: a hash of its fields."""
    return "row:" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


class RowChecker:
    """Makes each row of a file a lead of its form, or says why it cannot be one."""

    def __init__(self, mapping: Mapping[str, str], id_column: str | None,
                 required: tuple[str, ...]) -> None:
        self.mapping = dict(mapping)
        self.id_column = id_column
        self.required = required

    def check(self, row: Row) -> Checked | str:
        """The row's lead, or the reason it is rejected."""
        if row.error is not None:
            return row.error
        assert row.fields is not None
        fields = row.fields
        if self.mapping:
            get = self.mapping.get
            # A column mapped to "" is left out; the reader's dict is never changed.
            fields = {target: value for name, value in fields.items()
                      if (target := get(name, name))}
        external: str | None = None
        if self.id_column is not None:
            raw = row.fields.get(self.id_column)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                return f"{self.id_column}: the id column is empty"
            external = str(raw).strip()
            if len(external) > MAX_EXTERNAL_ID:
                return f"{self.id_column}: longer than {MAX_EXTERNAL_ID} characters"
        try:
            payload = validate_payload(fields, field="row")
            if self.required:
                check_required(self.required, payload)
        except BadInput as exc:
            return str(exc)
        if external is not None:
            return Checked(row.line, payload, external, None)
        canonical = canonical_json(payload)
        return Checked(row.line, payload, row_hash(canonical), canonical)

"""Field mapping: which lead fields a connector sends, under which CRM field names.

A connector declares ``fields: FieldMap = FieldMap()`` in its config. The raw
form maps each CRM field to a spec::

    {"Email": {"from": "email", "transform": ["strip", "lower"], "required": true},
     "LastName": "last_name",                      # copy a lead field as it is
     "LeadSource": {"const": "Web"},
     "Name": {"template": "{first_name} {last_name}"},
     "Phone": {"from": "phone", "transform": "digits", "default": "n/a"},
     "external_id": {"meta": "idempotency_key"},      # the same on every retry
     "Note": {"template": "lead {meta.lead_id} from {meta.source}"}}

An empty map — the default — sends the lead's fields as they are. A non-empty
map sends only the CRM fields it names.
"""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Callable, Mapping
from typing import Any

import pydantic
from pydantic_core import PydanticUndefined

from .errors import RejectedError
from .rules import _invalid

Transform = Callable[[Any], Any]

#: What ``meta`` (and a template's ``{meta.NAME}``) can name: the engine's own facts of
#: the lead and the delivery (:meth:`~.connector.LeadEnvelope.metadata`). All but
#: ``attempt`` are the same on every attempt of a delivery, so a CRM that de-duplicates
#: on a field of its own gets a stable id across retries.
META_FIELDS = (
    "lead_id", "delivery_id", "idempotency_key", "external_id", "form_id", "source",
    "received_at", "attempt",
)
_META_PREFIX = "meta."


def _text(op: Callable[[str], str]) -> Transform:
    # Text transforms leave numbers and booleans alone: a JSON body keeps its types.
    return lambda value: op(value) if isinstance(value, str) else value


def _digits(value: Any) -> str:
    text = str(value).strip()
    # isdecimal + int() also folds full-width and other script digits to ASCII.
    digits = "".join(str(int(c)) for c in text if c.isdecimal())
    return "+" + digits if text.startswith("+") and digits else digits


def _str(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _int(value: Any) -> int:
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            value = value.strip()
    number = float(value)
    # Never truncate silently: 3.7 is not an int.
    if not number.is_integer():
        raise ValueError("not a whole number")
    return int(number)


def _float(value: Any) -> float:
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number):
        raise ValueError("not a finite number")  # JSON cannot carry it
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool | int | float):
        return bool(value)
    return str(value).strip().lower() in ("yes", "true", "1", "on")


TRANSFORMS: dict[str, Transform] = {
    "strip": _text(str.strip),
    "lower": _text(str.lower),
    "upper": _text(str.upper),
    "title": _text(str.title),
    "digits": _digits,
    "str": _str,
    "int": _int,
    "float": _float,
    "bool": _bool,
}
_KNOWN = ", ".join(sorted([*TRANSFORMS, "truncate:N"]))


# Cached so equal specs hold the very same functions, and compare equal.
@functools.lru_cache(maxsize=1024)
def _transform(name: str) -> Transform:
    """The transform called ``name``; a :class:`PydanticCustomError` when there is none."""
    if name in TRANSFORMS:
        return TRANSFORMS[name]
    base, _, arg = name.partition(":")
    if base == "truncate":
        if not arg.strip().isdigit() or int(arg) < 1:
            raise _invalid(f"truncate needs a length of at least 1, like truncate:80, not {name!r}")
        length = int(arg)
        return _text(lambda s: s[:length])
    raise _invalid(f"unknown transform {name!r} (known: {_KNOWN})")


class FieldSpec(pydantic.BaseModel):
    """How one CRM field gets its value. The string ``"email"`` means ``{"from": "email"}``.

    Give one of ``from`` (a lead field; defaults to the CRM field's own name),
    ``meta`` (one of :data:`META_FIELDS`), ``const`` (a fixed value) or ``template``
    (``"{first_name} {last_name}"``, ``{meta.lead_id}`` for a meta field; a missing
    field renders empty and the result is trimmed). ``transform``
    (a name or a list, applied in order) does not touch lists or objects.
    A missing or blank value — after transforms — takes ``default`` as given;
    without one, a ``required`` field rejects the lead and any other is left out.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    from_: str | None = pydantic.Field(None, alias="from", min_length=1)
    meta: str | None = None
    const: Any = None
    template: str | None = None
    default: Any = None
    transform: tuple[str, ...] = ()
    required: bool = False
    _steps: tuple[tuple[str, Transform], ...] = pydantic.PrivateAttr(())
    _pieces: tuple[tuple[str, str | None], ...] = pydantic.PrivateAttr(())

    @pydantic.model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"from": value}
        if not isinstance(value, Mapping):
            raise _invalid("give a lead field name or an object with from, const or template")
        return value

    @pydantic.field_validator("transform", mode="before")
    @classmethod
    def _transforms(cls, value: Any) -> tuple[str, ...]:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise _invalid("give a transform name or a list of them")
        for name in names:
            _transform(name)
        return tuple(names)

    @pydantic.field_validator("meta")
    @classmethod
    def _meta(cls, value: str | None) -> str | None:
        if value is not None and value not in META_FIELDS:
            raise _invalid(f"unknown meta field {value!r} (known: {', '.join(META_FIELDS)})")
        return value

    @pydantic.field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            _template_pieces(value)
        return value

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        given = [n for n in ("from_", "meta", "const", "template")
                 if n in self.model_fields_set]
        if len(given) > 1:
            names = " and ".join(n.rstrip("_") for n in given)
            raise _invalid(f"give one of from, meta, const, template (got {names})")
        if given == ["const"] and "default" in self.model_fields_set:
            raise _invalid("'default' has no use with 'const'")
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._steps = tuple((name, _transform(name)) for name in self.transform)
        if self.template is not None:
            self._pieces = _template_pieces(self.template)

    @pydantic.model_serializer(mode="plain")
    def _compact(self) -> str | dict[str, Any]:
        # Dump the raw form an operator writes, so a dumped config validates again.
        given = self.model_fields_set
        if given == {"from_"}:
            return str(self.from_)
        out = {"from" if n == "from_" else n: getattr(self, n) for n in type(self).model_fields
               if n in given}
        if "transform" in out:
            out["transform"] = list(self.transform)
        return out

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        # The string shorthand is accepted by a "before" validator the schema can't see.
        schema = handler(core_schema)
        return {"anyOf": [{"type": "string", "description": "the lead field to copy"}, schema]}

    def resolve(
        self, crm_field: str, fields: Mapping[str, Any], meta: Mapping[str, Any] | None = None
    ) -> tuple[bool, Any]:
        """``(True, value)`` to send for ``crm_field``, or ``(False, None)`` to leave it out.

        ``meta`` is the lead's :meth:`~.connector.LeadEnvelope.metadata` (none: every
        meta field is missing).

        :raises RejectedError: a required value is missing, or a transform cannot apply.
        """
        meta = meta or {}
        source = self.from_ or (f"{_META_PREFIX}{self.meta}" if self.meta else crm_field)
        if "const" in self.model_fields_set:
            return True, self._apply(self.const, source, crm_field)
        if self.template is not None:
            raw: Any = "".join(
                text + ("" if name is None else _render(_lookup(name, fields, meta)))
                for text, name in self._pieces
            ).strip()
        elif self.meta is not None:
            raw = meta.get(self.meta)
        else:
            raw = fields.get(source)
        value = None if _blank(raw) else self._apply(raw, source, crm_field)
        if not _blank(value):
            return True, value
        if "default" in self.model_fields_set:
            return True, self.default
        if self.required:
            what = (
                "its template rendered empty" if self.template is not None
                else f"the lead has no {self.meta!r}" if self.meta is not None
                else f"lead field {source!r} is missing or empty"
            )
            raise RejectedError(f"CRM field {crm_field!r} is required but {what}")
        return False, None

    def _apply(self, value: Any, source: str, crm_field: str) -> Any:
        if isinstance(value, Mapping | list | tuple):
            return value  # structured values go into JSON bodies untouched
        for name, step in self._steps:
            try:
                value = step(value)
            except (ValueError, TypeError, OverflowError):
                raise RejectedError(
                    f"lead field {source!r} for CRM field {crm_field!r}: "
                    f"cannot apply {name} to {str(value)[:40]!r}"
                ) from None
        return value


class FieldMap(pydantic.RootModel[dict[str, FieldSpec]]):
    """CRM field name → :class:`FieldSpec`; usable as a pydantic field type.

    ``FieldMap()`` (also what None validates to) is empty and means "send the
    lead's fields as they are"; it is the default connectors should declare.
    """

    model_config = pydantic.ConfigDict(frozen=True)
    root: dict[str, FieldSpec] = pydantic.Field(default_factory=dict)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        if value is None or value is PydanticUndefined:  # FieldMap() passes no value at all
            return {}
        if not isinstance(value, Mapping):
            raise _invalid("give an object mapping CRM field names to lead fields")
        return value

    @pydantic.field_validator("root")
    @classmethod
    def _names(cls, value: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        if any(not name.strip() for name in value):
            raise _invalid("CRM field names must not be empty")
        return value

    @property
    def passthrough(self) -> bool:
        """True when the map is empty and leads are sent as they are."""
        return not self.root

    def apply(
        self, fields: Mapping[str, Any], meta: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The CRM fields to send for a lead's ``fields``, in the map's order; ``meta``
        (the lead's :meth:`~.connector.LeadEnvelope.metadata`) serves ``meta`` specs.

        :raises RejectedError: naming the lead field and the CRM field when a
            required value is missing or a transform cannot apply to it.
        """
        if not self.root:
            return dict(fields)
        out: dict[str, Any] = {}
        for crm_field, spec in self.root.items():
            present, value = spec.resolve(crm_field, fields, meta)
            if present:
                out[crm_field] = value
        return out


def _template_pieces(template: str) -> tuple[tuple[str, str | None], ...]:
    """``(literal, placeholder)`` pairs; refuses what a lead field name can't be."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise _invalid(f"invalid template: {exc}") from None
    for _, name, spec, conversion in parsed:
        if name is not None and (not name.strip() or spec or conversion):
            shown = "{" + (name or "") + (f"!{conversion}" if conversion else "") + (
                f":{spec}" if spec else "") + "}"
            raise _invalid(f"invalid template: placeholder {shown} must be a lead field name")
        if name is not None and name.startswith(_META_PREFIX) and (
                name[len(_META_PREFIX):] not in META_FIELDS):
            raise _invalid(f"invalid template: unknown meta field {{{name}}} "
                           f"(known: {', '.join(META_FIELDS)})")
    return tuple((text, name) for text, name, _, _ in parsed)


def _lookup(name: str, fields: Mapping[str, Any], meta: Mapping[str, Any]) -> Any:
    """A template placeholder's value: ``meta.NAME`` from the metadata, else a lead field."""
    if name.startswith(_META_PREFIX):
        return meta.get(name[len(_META_PREFIX):])
    return fields.get(name)


def _render(value: Any) -> str:
    return "" if value is None else _str(value)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())

"""Response expectations: what an integration's CRM must answer for a lead to count as delivered.

An integration declares what a good answer looks like::

    {"combine": "all",
     "rules": [{"kind": "status", "in": [201]},
               {"kind": "json_field", "path": "data[0].code", "equals": "SUCCESS"}],
     "reference": {"json": "data[0].details.id"}}

:meth:`Expectations.parse` validates that once, at configuration time — a broken
regex, path or XPath is refused there with one line naming the field — and
:meth:`Expectations.evaluate` judges each response into a
:class:`~leadrelay.engine.outcome.Verdict` carrying a trace of every rule.

Plugins add kinds by subclassing :class:`Rule` and registering the class through
the ``register_expectation_kinds`` hook; the built-in kinds are registered the
same way (:func:`builtin_rules`).
"""

from __future__ import annotations

import abc
import contextlib
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import pydantic
from lxml import etree
from pydantic_core import PydanticCustomError

from .errors import ConfigError
from .outcome import Outcome, RuleTrace, Verdict
from .wire import CrmResponse

#: Used when neither the integration nor its connector declares expectations.
DEFAULT_EXPECTATIONS: Mapping[str, Any] = {
    "combine": "all",
    "rules": [{"kind": "status", "in": ["2xx"]}],
}

_M = TypeVar("_M", bound=pydantic.BaseModel)

#: A captured CRM reference longer than this is cut: it is an id, not a document.
REFERENCE_LIMIT = 255

# -- rules ------------------------------------------------------------------------------


class Rule(pydantic.BaseModel):
    """Base of every expectation kind.

    A subclass sets ``kind`` (the name used in ``{"kind": ...}``), declares its
    settings as pydantic fields (unknown keys are refused) and implements
    :meth:`evaluate`. Validate everything costly or fallible — compile a regex,
    parse a path — at parse time, so a broken rule never reaches a delivery.
    """

    kind: ClassVar[str]
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    @abc.abstractmethod
    def evaluate(self, response: CrmResponse) -> RuleTrace:
        """Judge ``response`` against this rule; never raise for a surprising response.

        Build the result with :meth:`make_trace`. Its ``detail`` reads after the
        rule's description and starts with "saw" (``status in [2xx]`` · ``saw 400``),
        so a verdict's reason reads as one sentence.
        """

    def describe(self) -> str:
        """A short human description shown in traces, e.g. ``status in [2xx]``."""
        settings = " ".join(f"{k}={_show(v)}" for k, v in self.to_dict().items() if k != "kind")
        return f"{self.kind} {settings}".strip()

    def make_trace(self, passed: bool, detail: str, seen: Any = None) -> RuleTrace:
        """A :class:`RuleTrace` for this rule, with ``seen`` kept short and JSON-ready."""
        return RuleTrace(self.describe(), passed, detail, _short(seen))

    def to_dict(self) -> dict[str, Any]:
        """The rule's raw form (``{"kind": ..., ...}``) as given, after validation."""
        dumped = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return {"kind": self.kind, **dumped}


class StatusRule(Rule):
    """``{"kind": "status", "in": [200, "2xx", "200-299"], "not_in": [204]}``."""

    kind = "status"
    in_: tuple[int | str, ...] | None = pydantic.Field(None, alias="in")
    not_in: tuple[int | str, ...] | None = None
    _in: tuple[tuple[int, int], ...] = pydantic.PrivateAttr(())
    _not_in: tuple[tuple[int, int], ...] = pydantic.PrivateAttr(())

    @pydantic.field_validator("in_", "not_in", mode="before")
    @classmethod
    def _statuses(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, int | str):
            value = [value]
        if not isinstance(value, list | tuple) or not value:
            raise _invalid('give a list of statuses, like [201, "2xx", "200-299"]')
        return tuple(_status_token(v) for v in value)

    @pydantic.model_validator(mode="after")
    def _one_side(self) -> StatusRule:
        if self.in_ is None and self.not_in is None:
            raise _invalid("give 'in' or 'not_in'")
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._in = tuple(_status_range(t) for t in self.in_ or ())
        self._not_in = tuple(_status_range(t) for t in self.not_in or ())

    def describe(self) -> str:
        parts = ["status"]
        if self.in_ is not None:
            parts.append(f"in [{', '.join(map(str, self.in_))}]")
        if self.not_in is not None:
            parts.append(f"not in [{', '.join(map(str, self.not_in))}]")
        return " ".join(parts)

    def evaluate(self, response: CrmResponse) -> RuleTrace:
        status = response.status
        ok = (self.in_ is None or _within(status, self._in)) and not _within(status, self._not_in)
        return self.make_trace(ok, f"saw {status}", status)


class BodyContainsRule(Rule):
    """``{"kind": "body_contains", "value": "inlineMessage", "ignore_case": false}``."""

    kind = "body_contains"
    value: str = pydantic.Field(min_length=1)
    ignore_case: bool = False
    #: True for ``body_not_contains``: finding the value fails the rule.
    negate: ClassVar[bool] = False
    _regex: re.Pattern[str] = pydantic.PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._regex = re.compile(re.escape(self.value), re.IGNORECASE if self.ignore_case else 0)

    def describe(self) -> str:
        verb = "does not contain" if self.negate else "contains"
        return f"body {verb} {_show(self.value)}" + (" (any case)" if self.ignore_case else "")

    def evaluate(self, response: CrmResponse) -> RuleTrace:
        return _search_body(self, self._regex, self.negate, response)


class BodyNotContainsRule(BodyContainsRule):
    """``{"kind": "body_not_contains", "value": "error", "ignore_case": true}``."""

    kind = "body_not_contains"
    negate = True


class RegexRule(Rule):
    """``{"kind": "regex", "pattern": "\\"success\\":\\s*true", "negate": false}`` on the body.

    The pattern is searched (not anchored); inline flags such as ``(?i)`` work.
    """

    kind = "regex"
    pattern: str
    negate: bool = False
    _regex: re.Pattern[str] = pydantic.PrivateAttr()

    @pydantic.field_validator("pattern")
    @classmethod
    def _check_pattern(cls, value: str) -> str:
        _regex(value)
        return value

    def model_post_init(self, context: Any, /) -> None:
        self._regex = re.compile(self.pattern)

    def describe(self) -> str:
        return f"regex {'not ' if self.negate else ''}/{self.pattern}/"

    def evaluate(self, response: CrmResponse) -> RuleTrace:
        return _search_body(self, self._regex, self.negate, response)


class JsonFieldRule(Rule):
    """A value in the parsed answer: ``{"kind": "json_field", "path": "data[0].code", ...}``.

    Give at most one of ``equals``, ``not_equals``, ``in`` (a list) or ``exists``
    (true/false); with none, the rule means "exists". Values compare as JSON
    values: ``true`` is not ``1`` and ``"201"`` is not ``201``. The path is read
    from ``response.data`` when the connector parsed one (SOAP results), else
    from the body as JSON.
    """

    kind = "json_field"
    path: str
    equals: Any = None
    not_equals: Any = None
    in_: tuple[Any, ...] | None = pydantic.Field(None, alias="in")
    exists: bool | None = None
    _path: tuple[str | int, ...] = pydantic.PrivateAttr(())

    @pydantic.field_validator("in_", mode="before")
    @classmethod
    def _values(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple) or not value:
            raise _invalid("give a non-empty list of values")
        return value

    @pydantic.field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        return _checked_path(value)

    @pydantic.model_validator(mode="after")
    def _one_test(self) -> JsonFieldRule:
        _at_most_one(self, ("equals", "not_equals", "in_", "exists"))
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._path = parse_path(self.path)

    def describe(self) -> str:
        return f"json_field {self.path} {_test_text(self)}"

    def evaluate(self, response: CrmResponse) -> RuleTrace:
        doc, why = _json_document(response)
        if why:
            return self.make_trace(False, why, response.text)
        found, value, why = resolve_path(doc, self._path)
        return _judge_value(self, found, value, why)


class HeaderRule(Rule):
    """``{"kind": "header", "name": "OData-EntityId", "equals"?: ..., "matches"?: regex}``.

    Without ``equals`` or ``matches`` the header only has to be present.
    """

    kind = "header"
    name: str = pydantic.Field(min_length=1)
    equals: str | None = None
    matches: str | None = None
    _regex: re.Pattern[str] | None = pydantic.PrivateAttr(None)

    @pydantic.field_validator("matches")
    @classmethod
    def _check_matches(cls, value: str | None) -> str | None:
        if value is not None:
            _regex(value)
        return value

    @pydantic.model_validator(mode="after")
    def _one_test(self) -> HeaderRule:
        _at_most_one(self, ("equals", "matches"))
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._regex = None if self.matches is None else re.compile(self.matches)

    def describe(self) -> str:
        if self.equals is not None:
            return f"header {self.name} == {_show(self.equals)}"
        if self.matches is not None:
            return f"header {self.name} matches /{self.matches}/"
        return f"header {self.name} present"

    def evaluate(self, response: CrmResponse) -> RuleTrace:
        value = response.headers.get(self.name)
        if value is None:
            return self.make_trace(False, "saw no such header")
        if self.equals is not None:
            ok = value.strip() == self.equals
        else:
            ok = self._regex is None or self._regex.search(value) is not None
        return self.make_trace(ok, f"saw {_show(value)}", value)


class XmlElementRule(Rule):
    """An XPath over the raw body parsed as XML: ``{"kind": "xml_element", "xpath": ...}``.

    ``namespaces`` maps the prefixes the XPath uses (a SOAP body's default
    namespace needs one). ``equals`` passes when at least one node matches and
    *every* matched node's text equals it — so ``//sf:success == "true"`` also
    catches one failed record among several. ``exists`` (true/false) tests that
    something matches; with neither, the rule means "exists".
    """

    kind = "xml_element"
    namespaces: dict[str, str] = pydantic.Field(default_factory=dict)
    xpath: str
    equals: str | None = None
    exists: bool | None = None

    @pydantic.field_validator("xpath")
    @classmethod
    def _check_xpath(cls, value: str, info: pydantic.ValidationInfo) -> str:
        _compile_xpath(value, info.data.get("namespaces"))
        return value

    @pydantic.model_validator(mode="after")
    def _one_test(self) -> XmlElementRule:
        _at_most_one(self, ("equals", "exists"))
        return self

    def describe(self) -> str:
        return f"xml_element {self.xpath} {_test_text(self)}"

    def evaluate(self, response: CrmResponse) -> RuleTrace:
        root, why = _xml_root(response)
        if root is None:
            return self.make_trace(False, why, response.text)
        try:
            texts, present = _xpath_result(_compile_xpath(self.xpath, self.namespaces)(root))
        except etree.XPathError as exc:
            return self.make_trace(False, f"saw the XPath fail: {exc}")
        nothing = f"saw no match in a <{etree.QName(root).localname}> document"
        if self.equals is not None:
            if not texts:
                return self.make_trace(False, nothing)
            seen: Any = texts[0] if len(texts) == 1 else texts
            return self.make_trace(all(t == self.equals for t in texts), f"saw {_show(seen)}", seen)
        wanted = self.exists is not False
        if present:
            return self.make_trace(wanted, f"saw {_show(texts)}", texts)
        return self.make_trace(not wanted, nothing)


def builtin_rules() -> list[type[Rule]]:
    """The expectation kinds leadrelay ships, registered like any plugin's."""
    return [StatusRule, BodyContainsRule, BodyNotContainsRule, RegexRule,
            JsonFieldRule, HeaderRule, XmlElementRule]


# -- the CRM's reference for the record ---------------------------------------------------


class Reference(pydantic.BaseModel):
    """Where an accepted answer carries the CRM's id for the new record. Give one of:

    ``{"json": "data[0].details.id"}`` (same paths as ``json_field``),
    ``{"header": "OData-EntityId", "pattern": "\\\\(([^)]+)\\\\)"}``,
    ``{"xpath": "//sf:id", "namespaces": {...}}``, or ``{"regex": "id=(\\\\w+)"}`` on the body.
    A pattern or regex yields its first group when it has one, else the whole match.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    json_path: str | None = pydantic.Field(None, alias="json")
    header: str | None = pydantic.Field(None, min_length=1)
    pattern: str | None = None
    namespaces: dict[str, str] = pydantic.Field(default_factory=dict)
    xpath: str | None = None
    regex: str | None = None

    @pydantic.field_validator("json_path")
    @classmethod
    def _check_path(cls, value: str | None) -> str | None:
        return None if value is None else _checked_path(value)

    @pydantic.field_validator("pattern", "regex")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            _regex(value)
        return value

    @pydantic.field_validator("xpath")
    @classmethod
    def _check_xpath(cls, value: str | None, info: pydantic.ValidationInfo) -> str | None:
        if value is not None:
            _compile_xpath(value, info.data.get("namespaces"))
        return value

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> Reference:
        sources = [n for n in ("json_path", "header", "xpath", "regex") if getattr(self, n)]
        if len(sources) != 1:
            raise _invalid("give exactly one of json, header, xpath, regex")
        if self.pattern is not None and self.header is None:
            raise _invalid("'pattern' goes with 'header'; use 'regex' for the body")
        if self.namespaces and self.xpath is None:
            raise _invalid("'namespaces' goes with 'xpath'")
        return self

    def capture(self, response: CrmResponse) -> str | None:
        """The reference found in ``response``, or None; never raises for a surprising body."""
        value: Any = None
        if self.json_path is not None:
            doc, why = _json_document(response)
            if not why:
                _, value, _ = resolve_path(doc, parse_path(self.json_path))
        elif self.header is not None:
            value = _first_match(self.pattern, response.headers.get(self.header))
        elif self.regex is not None:
            value = _first_match(self.regex, response.text)
        elif self.xpath is not None:
            root, _ = _xml_root(response)
            if root is not None:
                with contextlib.suppress(etree.XPathError):
                    texts, _ = _xpath_result(_compile_xpath(self.xpath, self.namespaces)(root))
                    value = texts[0] if texts else None
        if value is None or isinstance(value, dict | list):
            return None
        text = _json_text(value) if isinstance(value, bool) else str(value)
        return text.strip()[:REFERENCE_LIMIT] or None

    def to_dict(self) -> dict[str, Any]:
        """The raw form, as given."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


# -- expectations ----------------------------------------------------------------------


@dataclass(frozen=True)
class Expectations:
    """An integration's parsed, validated expectations. Build with :meth:`parse`.

    Every rule is evaluated, in order, whatever the combination, so the trace
    shows the whole picture: an operator fixing the rule that failed sees at
    once whether the next one would fail too. ``combine="all"``: the first
    failing rule decides (rejected), else the last rule (accepted).
    ``combine="any"``: the first passing rule decides (accepted), else the
    response is rejected with every rule's reason.
    """

    rules: tuple[Rule, ...]
    combine: Literal["all", "any"] = "all"
    reference: Reference | None = None

    def __post_init__(self) -> None:
        if not self.rules:  # "all of nothing" would accept every answer
            raise _config_error("expectations.rules", "give a non-empty list of rules")

    @classmethod
    def parse(
        cls,
        raw: Mapping[str, Any] | None,
        kinds: Mapping[str, type[Rule]],
        *,
        default: Mapping[str, Any] | None = None,
    ) -> Expectations:
        """Validate ``raw`` (``{"combine", "rules", "reference"}``) into expectations.

        :param raw: the integration's expectations; None or empty uses ``default``.
        :param kinds: the usable rule kinds by name (built-in and plugins').
        :param default: the connector's default; None uses :data:`DEFAULT_EXPECTATIONS`.
        :raises ConfigError: one line naming the first invalid field, e.g.
            ``expectations.rules[2].pattern: invalid regex: ...``.
        """
        if not raw:
            raw = default or DEFAULT_EXPECTATIONS
        if not isinstance(raw, Mapping):
            raise _config_error("expectations", "must be an object")
        for key in raw:
            if key not in ("combine", "rules", "reference"):
                raise _config_error(f"expectations.{key}", "unknown key")
        combine = raw.get("combine", "all")
        if combine not in ("all", "any"):
            raise _config_error("expectations.combine", f"must be 'all' or 'any', not {combine!r}")
        rules_raw = raw.get("rules")
        if not isinstance(rules_raw, Sequence) or isinstance(rules_raw, str) or not rules_raw:
            raise _config_error("expectations.rules", "give a non-empty list of rules")
        rules = tuple(_parse_rule(item, i, kinds) for i, item in enumerate(rules_raw))
        reference = None
        if raw.get("reference") is not None:
            reference = _validate(Reference, raw["reference"], "expectations.reference")
        return cls(rules, combine, reference)

    def evaluate(self, response: CrmResponse) -> Verdict:
        """Judge ``response``; the reference is captured only when it is accepted."""
        trace = tuple(_run(rule, response) for rule in self.rules)
        if self.combine == "all":
            failed = next((t for t in trace if not t.passed), None)
            if failed is not None:
                reason = f"response mismatch: {failed.rule} {failed.detail}"
                return Verdict(Outcome.REJECTED, reason, failed.rule, trace)
            decider = trace[-1]
            reason = f"response matched all {len(trace)} rules"
        else:
            passed = next((t for t in trace if t.passed), None)
            if passed is None:
                reasons = "; ".join(f"{t.rule} {t.detail}" for t in trace)
                reason = _clip(f"response mismatch: no rule passed ({reasons})", 1000)
                return Verdict(Outcome.REJECTED, reason, "combine any: no rule passed", trace)
            decider = passed
            reason = f"response matched: {passed.rule} {passed.detail}"
        ref = self.reference.capture(response) if self.reference else None
        return Verdict(Outcome.ACCEPTED, reason, decider.rule, trace, crm_reference=ref)

    def to_dict(self) -> dict[str, Any]:
        """The normalised raw form; ``parse`` of it gives equal expectations."""
        out: dict[str, Any] = {"combine": self.combine, "rules": [r.to_dict() for r in self.rules]}
        if self.reference is not None:
            out["reference"] = self.reference.to_dict()
        return out


def _parse_rule(item: Any, index: int, kinds: Mapping[str, type[Rule]]) -> Rule:
    where = f"expectations.rules[{index}]"
    if not isinstance(item, Mapping):
        raise _config_error(where, "must be an object with a 'kind'")
    kind = item.get("kind")
    if kind is None:
        raise _config_error(f"{where}.kind", "required")
    if not isinstance(kind, str) or kind not in kinds:
        known = ", ".join(sorted(kinds))
        raise _config_error(f"{where}.kind", f"unknown kind {kind!r} (known: {known})")
    settings = {k: v for k, v in item.items() if k != "kind"}
    return _validate(kinds[kind], settings, where)


def _validate(model: type[_M], raw: Any, where: str) -> _M:
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        loc = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise _config_error(loc, "unknown key") from None
        if err["type"] == "missing":
            raise _config_error(loc, "required") from None
        if err["type"] == "value_error":  # a plain ValueError from a plugin's validator
            raise _config_error(loc, str(err["ctx"]["error"])) from None
        raise _config_error(loc, err["msg"]) from None
    except Exception as exc:  # a plugin's validator with a bug: refuse the rule, say why
        raise _config_error(where, f"refused: {type(exc).__name__}: {_clip(str(exc))}") from None


def _run(rule: Rule, response: CrmResponse) -> RuleTrace:
    # A plugin's rule with a bug fails its own check; it must never crash a delivery.
    try:
        trace = rule.evaluate(response)
    except Exception as exc:
        detail = f"saw the rule raise {type(exc).__name__}: {_clip(str(exc))}"
        return RuleTrace(_describe(rule), False, detail)
    if not isinstance(trace, RuleTrace):
        return RuleTrace(_describe(rule), False, f"saw it return {type(trace).__name__}")
    return trace


def _describe(rule: Rule) -> str:
    try:
        return rule.describe()
    except Exception:
        return str(getattr(rule, "kind", type(rule).__name__))


# -- paths ------------------------------------------------------------------------------

_PATH_TOKEN = re.compile(
    r"""\.?(?P<key>[^.\[\]'"\s]+)
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*"(?P<dq>(?:[^"\\]|\\.)*)"\s*\]
      | \[\s*'(?P<sq>(?:[^'\\]|\\.)*)'\s*\]""",
    re.VERBOSE,
)


def parse_path(text: str) -> tuple[str | int, ...]:
    """Parse a JSONPath-like path (``$.data[0]["odd key"].id``) into keys and indexes.

    A leading ``$`` or ``$.`` is optional; ``$`` alone is the whole document.

    :raises ValueError: naming the position of the first thing that is not a path.
    """
    s = text.strip()
    if not s:
        raise ValueError("invalid path: empty")
    pos = 1 if s == "$" or s.startswith(("$.", "$[")) else 0
    if s[pos:pos + 1] == "." and pos == 0:
        raise ValueError("invalid path: unexpected '.' at position 0")
    parts: list[str | int] = []
    while pos < len(s):
        m = _PATH_TOKEN.match(s, pos)
        # A bare key is only allowed first or after a dot: "a b" or "a]" are typos.
        if m is None or (m["key"] and parts and s[pos] != "."):
            if s[pos] == "." and pos > 0:
                raise ValueError(f"invalid path: expected a key after '.' at position {pos}")
            raise ValueError(f"invalid path: unexpected {s[pos]!r} at position {pos}")
        if m["key"] is not None:
            parts.append(m["key"])
        elif m["index"] is not None:
            parts.append(int(m["index"]))
        else:
            parts.append(re.sub(r"\\(.)", r"\1", m["dq"] if m["dq"] is not None else m["sq"]))
        pos = m.end()
    return tuple(parts)


def resolve_path(doc: Any, path: Sequence[str | int]) -> tuple[bool, Any, str]:
    """Follow ``path`` into ``doc``: ``(found, value, why-not)``; never raises."""
    value = doc
    for depth, part in enumerate(path):
        here = _path_text(path[:depth])
        if isinstance(part, int):
            if not isinstance(value, list):
                return False, None, f"saw {here} is {_json_type(value)}, not a list"
            if not -len(value) <= part < len(value):
                return False, None, f"saw no item [{part}] in {here} ({len(value)} items)"
            value = value[part]
        else:
            if not isinstance(value, Mapping):
                return False, None, f"saw {here} is {_json_type(value)}, not an object"
            if part not in value:
                return False, None, f"saw no key {_show(part)} in {here}"
            value = value[part]
    return True, value, ""


def _path_text(path: Sequence[str | int]) -> str:
    out = "$"
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}" if re.fullmatch(r"\w+", p) else (
            f"[{json.dumps(p)}]")
    return out


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


def _json_document(response: CrmResponse) -> tuple[Any, str]:
    """What paths address: the connector's parsed ``data``, else the JSON body."""
    if response.data is not None:
        return response.data, ""
    if not response.body.strip():
        return None, "saw an empty body, not JSON"
    try:
        return response.json, ""
    except (ValueError, RecursionError):
        return None, f"saw a body that is not JSON: {_show(response.text)}"


# -- XML --------------------------------------------------------------------------------

# Hardened: a CRM (or a proxy's page) cannot make us fetch URLs, expand
# entities or build huge trees.
_XML_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
)
_STRING_VALUE = etree.XPath("string()")


def _compile_xpath(expr: str, namespaces: Mapping[str, str] | None) -> Any:
    """The compiled XPath, shared: compiling is costly and lxml serialises its use."""
    return _xpath(expr, tuple(sorted((namespaces or {}).items())))


@functools.lru_cache(maxsize=256)
def _xpath(expr: str, namespaces: tuple[tuple[str, str], ...]) -> Any:
    try:
        xpath = etree.XPath(expr, namespaces=dict(namespaces))
        # Undefined prefixes and unknown functions only show on evaluation.
        xpath(etree.fromstring(b"<probe/>"))
    except (etree.XPathError, TypeError, ValueError) as exc:
        hint = " (map it in 'namespaces')" if "namespace prefix" in str(exc) else ""
        raise _invalid(f"invalid XPath: {exc}{hint}") from None
    return xpath


def _xml_root(response: CrmResponse) -> tuple[Any, str]:
    body = response.body.lstrip()
    if not body:
        return None, "saw an empty body, not XML"
    try:
        return etree.fromstring(body, _XML_PARSER), ""
    except (etree.XMLSyntaxError, ValueError) as exc:
        return None, f"saw a body that is not XML ({_clip(str(exc), 80)})"


def _xpath_result(result: Any) -> tuple[list[str], bool]:
    """An XPath result as texts, and whether it counts as "something matched"."""
    if isinstance(result, bool):
        return [_json_text(result)], result
    if isinstance(result, float):
        return [f"{result:g}"], result == result and result != 0
    if isinstance(result, str):
        return [result.strip()], bool(result)
    texts = [str(_STRING_VALUE(n)).strip() if isinstance(n, etree._Element) else str(n).strip()
             for n in result]
    return texts, bool(texts)


# -- shared helpers ---------------------------------------------------------------------


def _judge_value(rule: JsonFieldRule, found: bool, value: Any, why: str) -> RuleTrace:
    fields = rule.model_fields_set
    if "exists" in fields and rule.exists is False:
        return rule.make_trace(not found, why or f"saw {_show(value)}", value if found else None)
    if not found:
        return rule.make_trace(False, why)
    if "equals" in fields:
        ok = _json_equal(value, rule.equals)
    elif "not_equals" in fields:
        ok = not _json_equal(value, rule.not_equals)
    elif rule.in_ is not None:
        ok = any(_json_equal(value, v) for v in rule.in_)
    else:
        ok = True
    return rule.make_trace(ok, f"saw {_show(value)}", value)


_TESTS = {"equals": "==", "not_equals": "!=", "in_": "in"}


def _test_text(rule: Rule) -> str:
    """``== "SUCCESS"``, ``in [...]``, ``exists`` or ``absent``, from the settings given."""
    for name, op in _TESTS.items():
        if name in rule.model_fields_set:
            return f"{op} {_show(getattr(rule, name))}"
    return "absent" if getattr(rule, "exists", None) is False else "exists"


def _at_most_one(rule: pydantic.BaseModel, names: tuple[str, ...]) -> None:
    given = [n for n in names if n in rule.model_fields_set]
    if len(given) > 1:
        shown = ", ".join(n.rstrip("_") for n in given)
        raise _invalid(f"give at most one of {', '.join(n.rstrip('_') for n in names)} "
                       f"(got {shown})")


def _json_equal(a: Any, b: Any) -> bool:
    # JSON's true is not 1, though Python's True == 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _status_token(value: Any) -> int | str:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    if isinstance(value, str):
        token = value.strip().lower()
        if re.fullmatch(r"[1-5]xx", token):
            return token
        m = re.fullmatch(r"(\d{3})\s*-\s*(\d{3})", token)
        if m and 100 <= int(m[1]) <= int(m[2]) <= 599:
            return f"{m[1]}-{m[2]}"
    raise _invalid(f"{value!r} is not a status: give 100-599, a class like '2xx' "
                   "or a range like '200-299'")


def _status_range(token: int | str) -> tuple[int, int]:
    if isinstance(token, int):
        return token, token
    if token.endswith("xx"):
        base = int(token[0]) * 100
        return base, base + 99
    low, high = token.split("-")
    return int(low), int(high)


def _within(status: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(low <= status <= high for low, high in ranges)


def _checked_path(value: str) -> str:
    try:
        parse_path(value)
    except ValueError as exc:
        raise _invalid(str(exc)) from None
    return value.strip()


def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise _invalid(f"invalid regex: {exc}") from None


def _first_match(pattern: str | None, text: str | None) -> str | None:
    if text is None or pattern is None:
        return text
    m = re.search(pattern, text)
    if m is None:
        return None
    return m.group(1) if m.re.groups else m.group(0)


def _invalid(message: str) -> PydanticCustomError:
    # A custom error's message reaches the user as given (a ValueError's gets
    # pydantic's "Value error, " prefix). No context: braces stay literal.
    return PydanticCustomError("invalid", message)


def _config_error(field: str, message: str) -> ConfigError:
    return ConfigError(f"{field}: {message}", field=field)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _show(value: Any, limit: int = 60) -> str:
    """A value as compact JSON text, cut to ``limit`` characters."""
    return _clip(_json_text(value), limit)


def _short(value: Any, limit: int = 120) -> Any:
    """``value`` as stored in a trace: scalars as they are, text and containers cut short."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _clip(value, limit)
    return _clip(_json_text(value), limit)


def _search_body(rule: Rule, regex: re.Pattern[str], negate: bool, response: CrmResponse
                 ) -> RuleTrace:
    text = response.text
    found = regex.search(text)
    if found is None:
        return rule.make_trace(negate, f"saw no match in {len(text)} characters")
    # The match with a little context either side: enough to recognise it.
    seen = text[max(0, found.start() - 30):found.end() + 30]
    return rule.make_trace(not negate, f"saw a match at character {found.start()}", seen)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

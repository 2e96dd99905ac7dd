"""The built-in expectation kinds, and :class:`Rule`, the base every kind subclasses.

Each kind validates its settings at parse time and judges a
:class:`~leadrelay.engine.wire.CrmResponse` into a
:class:`~leadrelay.engine.outcome.RuleTrace`. :func:`builtin_rules` lists the
kinds leadrelay ships; plugins register theirs through the same hook.
"""

from __future__ import annotations

import abc
import functools
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import pydantic
from lxml import etree
from pydantic_core import PydanticCustomError

from .outcome import RuleTrace
from .paths import _clip, _json_document, _json_text, _show, parse_path, resolve_path
from .safe_regex import SafeRegex, UnsafePattern, checked_regex, compile_regex
from .wire import CrmResponse

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
    _regex: SafeRegex = pydantic.PrivateAttr()

    @pydantic.field_validator("value")
    @classmethod
    def _check_value(cls, value: str) -> str:
        # Checked as the costlier search, regardless of case: the one ignore_case may ask for.
        _regex(value, literal=True, ignore_case=True)
        return value

    def model_post_init(self, context: Any, /) -> None:
        # On the safe engine too: even a literal searched regardless of case backtracks on re.
        self._regex = compile_regex(
            self.value, literal=True, ignore_case=self.ignore_case, capture=False
        )

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

    The pattern is searched (not anchored); inline flags such as ``(?i)`` work. It runs on
    the linear-time engine of :mod:`~leadrelay.engine.safe_regex`.
    """

    kind = "regex"
    pattern: str
    negate: bool = False
    _regex: SafeRegex = pydantic.PrivateAttr()

    @pydantic.field_validator("pattern")
    @classmethod
    def _check_pattern(cls, value: str) -> str:
        _regex(value, capture=False)
        return value

    def model_post_init(self, context: Any, /) -> None:
        # Only where the match is matters here: without groups RE2 finds it in one pass.
        self._regex = compile_regex(self.pattern, capture=False)

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
    _regex: SafeRegex | None = pydantic.PrivateAttr(None)

    @pydantic.field_validator("matches")
    @classmethod
    def _check_matches(cls, value: str | None) -> str | None:
        if value is not None:
            _regex(value, capture=False)
        return value

    @pydantic.model_validator(mode="after")
    def _one_test(self) -> HeaderRule:
        _at_most_one(self, ("equals", "matches"))
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._regex = None if self.matches is None else compile_regex(self.matches, capture=False)

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


def _regex(
    pattern: str, *, capture: bool = True, literal: bool = False, ignore_case: bool = False
) -> SafeRegex:
    """An operator's pattern compiled for the safe engine and probed; refused with the reason
    (an ``invalid regex: …`` typo, or what the linear-time engine cannot run)."""
    try:
        return checked_regex(pattern, capture=capture, literal=literal, ignore_case=ignore_case)
    except UnsafePattern as exc:
        raise _invalid(str(exc)) from None


def _invalid(message: str) -> PydanticCustomError:
    # A custom error's message reaches the user as given (a ValueError's gets
    # pydantic's "Value error, " prefix). No context: braces stay literal.
    return PydanticCustomError("invalid", message)


def _short(value: Any, limit: int = 120) -> Any:
    """``value`` as stored in a trace: scalars as they are, text and containers cut short."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _clip(value, limit)
    return _clip(_json_text(value), limit)


def _search_body(rule: Rule, regex: SafeRegex, negate: bool, response: CrmResponse
                 ) -> RuleTrace:
    text = response.text
    found = regex.search(text)
    if found is None:
        return rule.make_trace(negate, f"saw no match in {len(text)} characters")
    # The match with a little context either side: enough to recognise it.
    seen = text[max(0, found.start() - 30):found.end() + 30]
    return rule.make_trace(not negate, f"saw a match at character {found.start()}", seen)

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

Two more keys help an operator act on a rejection (see :mod:`~leadrelay.engine.reasons`)::

    {"rules": [{"kind": "status", "in": [201]}],
     "reason": ["errors[0].message"],
     "final_when": [{"kind": "status", "in": [400, 422]}]}

``reason`` lists where the answer carries the CRM's own words (defaults are
tried otherwise); ``final_when`` lists rules of which any passing on a rejected
answer makes the rejection *final*: not retried (a validation error will not
pass in five minutes). A rule may also carry ``"final": true``: its own failure
is then final. Neither costs anything on an accepted answer.

Plugins add kinds by subclassing :class:`Rule` and registering the class through
the ``register_expectation_kinds`` hook; the built-in kinds are registered the
same way (:func:`builtin_rules`). The kinds live in :mod:`~leadrelay.engine.rules`,
paths in :mod:`~leadrelay.engine.paths`; both are re-exported here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import pydantic
from lxml import etree

from .errors import ConfigError
from .outcome import Outcome, RuleTrace, Verdict
from .paths import _clip, _json_document, _json_text, parse_path, resolve_path
from .reasons import ReasonPaths, with_words
from .rules import (
    Rule,
    _checked_path,
    _compile_xpath,
    _invalid,
    _regex,
    _xml_root,
    _xpath_result,
    builtin_rules,
)
from .safe_regex import compile_regex
from .wire import CrmResponse

__all__ = [
    "DEFAULT_EXPECTATIONS",
    "REFERENCE_LIMIT",
    "Expectations",
    "Reference",
    "Rule",
    "builtin_rules",
    "parse_path",
    "resolve_path",
]

#: Used when neither the integration nor its connector declares expectations.
DEFAULT_EXPECTATIONS: Mapping[str, Any] = {
    "combine": "all",
    "rules": [{"kind": "status", "in": ["2xx"]}],
}

_M = TypeVar("_M", bound=pydantic.BaseModel)

#: A captured CRM reference longer than this is cut: it is an id, not a document.
REFERENCE_LIMIT = 255

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
    #: Where the CRM's words are read on a rejection (None: the defaults).
    reason_paths: tuple[str, ...] | None = None
    #: Rules of which any passing on a rejected answer makes it final.
    final_when: tuple[Rule, ...] = ()
    #: Indexes of the rules whose own failure is final (``"final": true``).
    final_rules: frozenset[int] = frozenset()
    _reasons: ReasonPaths = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.rules:  # "all of nothing" would accept every answer
            raise _config_error("expectations.rules", "give a non-empty list of rules")
        object.__setattr__(self, "_reasons", ReasonPaths(self.reason_paths))

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
        if "reason" not in raw and default and default.get("reason") is not None:
            # Where the connector's answers explain a refusal holds for the operator's rules too.
            raw = {**raw, "reason": default["reason"]}
        for key in raw:
            if key not in _KEYS:
                raise _config_error(f"expectations.{key}", "unknown key")
        combine = raw.get("combine", "all")
        if combine not in ("all", "any"):
            raise _config_error("expectations.combine", f"must be 'all' or 'any', not {combine!r}")
        rules_raw = raw.get("rules")
        if not isinstance(rules_raw, Sequence) or isinstance(rules_raw, str) or not rules_raw:
            raise _config_error("expectations.rules", "give a non-empty list of rules")
        final_rules = frozenset(
            i for i, item in enumerate(rules_raw) if _final_flag(item, f"expectations.rules[{i}]")
        )
        rules = tuple(_parse_rule(item, i, kinds) for i, item in enumerate(rules_raw))
        reference = None
        if raw.get("reference") is not None:
            reference = _validate(Reference, raw["reference"], "expectations.reference")
        final_when: tuple[Rule, ...] = ()
        if raw.get("final_when") is not None:
            when = raw["final_when"]
            if not isinstance(when, Sequence) or isinstance(when, str) or not when:
                raise _config_error("expectations.final_when", "give a non-empty list of rules")
            final_when = tuple(
                _parse_rule(item, i, kinds, "expectations.final_when")
                for i, item in enumerate(when)
            )
        return cls(rules, combine, reference, _reason_paths(raw.get("reason")), final_when,
                   final_rules)

    def evaluate(self, response: CrmResponse) -> Verdict:
        """Judge ``response``; the reference is captured only when it is accepted.

        A rejection's reason carries the CRM's words (see :meth:`words`), and the
        verdict is final when a ``final`` rule failed or a ``final_when`` rule passed.
        """
        trace = tuple(_run(rule, response) for rule in self.rules)
        if self.combine == "all":
            index = next((i for i, t in enumerate(trace) if not t.passed), None)
            if index is not None:
                failed = trace[index]
                reason = f"response mismatch: {failed.rule} {failed.detail}"
                final = (f"the expectation rule {failed.rule} (final: true)"
                         if index in self.final_rules else "")
                return self._rejected(response, reason, failed.rule, trace, final)
            decider = trace[-1]
            reason = f"response matched all {len(trace)} rules"
        else:
            passed = next((t for t in trace if t.passed), None)
            if passed is None:
                reasons = "; ".join(f"{t.rule} {t.detail}" for t in trace)
                reason = _clip(f"response mismatch: no rule passed ({reasons})", 1000)
                final = next((f"the expectation rule {trace[i].rule} (final: true)"
                              for i in sorted(self.final_rules)), "")
                return self._rejected(response, reason, "combine any: no rule passed", trace,
                                      final)
            decider = passed
            reason = f"response matched: {passed.rule} {passed.detail}"
        ref = self.reference.capture(response) if self.reference else None
        return Verdict(Outcome.ACCEPTED, reason, decider.rule, trace, crm_reference=ref)

    def words(self, response: CrmResponse) -> str | None:
        """What the CRM said about a refusal, read at the reason paths; None when nothing."""
        reasons: ReasonPaths = self._reasons
        try:
            return reasons.words(response)
        except Exception:  # a surprising document must never crash a delivery
            return None

    def finality(self, response: CrmResponse) -> str:
        """What makes a rejection of ``response`` final under ``final_when``; "" when nothing."""
        for rule in self.final_when:
            trace = _run(rule, response)
            if trace.passed:
                return f"the expectations' final_when rule {trace.rule} ({trace.detail})"
        return ""

    def _rejected(self, response: CrmResponse, reason: str, decided_by: str,
                  trace: tuple[RuleTrace, ...], final: str) -> Verdict:
        return Verdict(Outcome.REJECTED, with_words(reason, self.words(response)), decided_by,
                       trace, final=final or self.finality(response))

    def to_dict(self) -> dict[str, Any]:
        """The normalised raw form; ``parse`` of it gives equal expectations."""
        rules = [
            {**r.to_dict(), "final": True} if i in self.final_rules else r.to_dict()
            for i, r in enumerate(self.rules)
        ]
        out: dict[str, Any] = {"combine": self.combine, "rules": rules}
        if self.reference is not None:
            out["reference"] = self.reference.to_dict()
        if self.reason_paths is not None:
            out["reason"] = list(self.reason_paths)
        if self.final_when:
            out["final_when"] = [r.to_dict() for r in self.final_when]
        return out


_KEYS = ("combine", "rules", "reference", "reason", "final_when")


def _final_flag(item: Any, where: str) -> bool:
    if not isinstance(item, Mapping) or "final" not in item:
        return False
    if not isinstance(item["final"], bool):
        raise _config_error(f"{where}.final", "must be true or false")
    return bool(item["final"])


def _reason_paths(raw: Any) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, Sequence):
        raise _config_error("expectations.reason", "give a list of paths, like ['errors']")
    out = []
    for i, path in enumerate(raw):
        if not isinstance(path, str):
            raise _config_error(f"expectations.reason[{i}]", "must be a path like 'errors'")
        try:
            parse_path(path)
        except ValueError as exc:
            raise _config_error(f"expectations.reason[{i}]", str(exc)) from None
        out.append(path.strip())
    return tuple(out)


def _parse_rule(item: Any, index: int, kinds: Mapping[str, type[Rule]],
                where_list: str = "expectations.rules") -> Rule:
    where = f"{where_list}[{index}]"
    if not isinstance(item, Mapping):
        raise _config_error(where, "must be an object with a 'kind'")
    kind = item.get("kind")
    if kind is None:
        raise _config_error(f"{where}.kind", "required")
    if not isinstance(kind, str) or kind not in kinds:
        known = ", ".join(sorted(kinds))
        raise _config_error(f"{where}.kind", f"unknown kind {kind!r} (known: {known})")
    settings = {k: v for k, v in item.items() if k not in ("kind", "final")}
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


def _first_match(pattern: str | None, text: str | None) -> str | None:
    if text is None or pattern is None:
        return text
    regex = compile_regex(pattern)  # validated when the integration was saved
    m = regex.search(text)
    if m is None:
        return None
    return m.group(1) if regex.groups else m.group(0)


def _config_error(field: str, message: str) -> ConfigError:
    return ConfigError(f"{field}: {message}", field=field)

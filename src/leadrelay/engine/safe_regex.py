"""Regexes that operators write, run on a linear-time engine.

Expectations (``regex``, ``header`` ``matches``, a ``reference`` pattern) carry
patterns written by operators and run them against whatever a CRM answers. On
Python's backtracking ``re`` a pattern like ``(a+)+$`` takes time doubling with
every character of the answer, holding the GIL: one such rule froze every
worker thread (issue 10, case 5). Here patterns run on RE2 (``google-re2``),
whose time is linear in the answer and which releases the GIL while it
searches.

RE2 cannot express what needs backtracking — backreferences, lookahead and
lookbehind, atomic groups, possessive repeats, conditionals, verbose mode — so a
pattern using them is refused when the integration is saved, with the reason.
For ordinary patterns the behaviour is ``re.search``'s: the same inline flags
(``(?i)``, ``(?m)``, ``(?s)``), leftmost-first matches, ``$`` also matching before
a final newline, and ``\\Z``, ``\\uXXXX``, ``\\N{NAME}`` understood. One documented
difference: ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII classes (``\\pL``, ``\\pN``
match letters and digits of every script).
"""

from __future__ import annotations

import functools
import random
import re
import string
import time
import unicodedata
from typing import Any

import re2

__all__ = [
    "MAX_LITERAL_LENGTH",
    "MAX_PATTERN_LENGTH",
    "MAX_PROGRAM_SIZE",
    "SafeRegex",
    "UnsafePattern",
    "checked_regex",
    "compile_regex",
]

#: The longest pattern accepted: a pattern's size bounds the cost per character searched.
MAX_PATTERN_LENGTH = 2000
#: The longest text a ``body_contains`` rule may look for.
MAX_LITERAL_LENGTH = 1000
#: The largest compiled pattern (RE2 instructions): when RE2's DFA gives up on a
#: pattern, each character searched costs time in proportion to this. Real-world
#: patterns stay under 200; ``.{1,200}`` is 1,803, ``\pL{1,100}`` 119,703.
MAX_PROGRAM_SIZE = 2000
#: At save time a pattern is searched through answers built to be hard for it, this
#: long; one taking more than :data:`PROBE_BUDGET` seconds of CPU on any of them (1.6 s
#: per MB of answer) is refused.
PROBE_LENGTH = 16 * 1024
PROBE_BUDGET = 0.025

_WHY = "patterns run on a linear-time engine (RE2), so that no answer can stall a worker"

#: RE2's "invalid perl operator: (?X" → the construct an operator wrote.
_UNSUPPORTED = {
    "(?=": "lookahead ((?=…), (?!…)) is",
    "(?!": "lookahead ((?=…), (?!…)) is",
    "(?<": "lookbehind ((?<=…), (?<!…)) is",
    "(?P": "backreferences (\\1, (?P=name)) are",
    "(?>": "atomic groups ((?>…)) are",
    "(?(": "conditional groups ((?(1)…|…)) are",
    "(?#": "comments ((?#…)) are",
    "(?x": "verbose mode ((?x)) is",
}


class UnsafePattern(ValueError):
    """A pattern that is invalid, too long, or needs more than a linear-time engine offers."""


class SafeRegex:
    """A compiled pattern, searched like ``re.search`` in time linear in the text.

    :param pattern: the pattern as the operator wrote it (Python ``re`` syntax).
    :param ignore_case: match regardless of case, like ``re.IGNORECASE``.
    :param capture: keep capturing groups; without them a search only finds where
        the match is, which RE2 does in one pass whatever the pattern.
    :param literal: ``pattern`` is plain text to find, not a pattern (``body_contains``:
        even a literal searched case-insensitively backtracks on ``re``).
    :raises UnsafePattern: with a message saying what is wrong and why.
    """

    def __init__(
        self, pattern: str, *, ignore_case: bool = False, capture: bool = True,
        literal: bool = False,
    ) -> None:
        if not isinstance(pattern, str):
            raise UnsafePattern("a pattern must be text")
        limit = MAX_LITERAL_LENGTH if literal else MAX_PATTERN_LENGTH
        if len(pattern) > limit:
            what = "a value to find" if literal else "a pattern"
            raise UnsafePattern(f"{what} is at most {limit} characters, got {len(pattern)}")
        self.pattern = pattern
        options = re2.Options()
        options.log_errors = False  # RE2 would print each refused pattern on stderr
        options.case_sensitive = not ignore_case
        options.never_capture = not capture
        source = re2.escape(pattern) if literal else _translate(pattern)
        try:
            self._re2: Any = re2.compile(source, options=options)
        except re2.error as exc:
            try:
                # A typo gets Python's message, as it always did; what Python accepts
                # and RE2 cannot run gets the reason.
                re.compile(pattern)
            except (re.error, OverflowError, RecursionError) as python_exc:
                raise UnsafePattern(f"invalid regex: {python_exc}") from None
            raise UnsafePattern(_explain(exc)) from None
        #: Capturing groups in the pattern (as ``re.Pattern.groups``; 0 without ``capture``).
        self.groups: int = self._re2.groups
        size = self._re2.programsize
        if size > MAX_PROGRAM_SIZE:
            raise UnsafePattern(
                f"the pattern is too complex to run safely: {size} RE2 instructions, at most "
                f"{MAX_PROGRAM_SIZE} (a counted repeat of a broad class, like .{{1,500}} or "
                "\\pL{1,100}, costs the most; prefer + or *)"
            )
        # ``$`` in ``re`` also matches just before a final newline; in RE2 only at the end.
        self._dollar = not literal and "$" in pattern

    def search(self, text: str) -> Any:
        """The first match in ``text`` (``start()``, ``end()``, ``group(n)``), or None."""
        try:
            found = self._re2.search(text)
        except UnicodeEncodeError:  # a lone surrogate: the same text, one "?" for each
            text = text.encode("utf-8", "replace").decode("utf-8")
            found = self._re2.search(text)
        if self._dollar and text.endswith("\n"):
            # ``re`` also finds what matches with ``$`` just before the final newline, which
            # is what RE2 finds in the text without it (offsets are the same); of the two,
            # the leftmost, as ``re`` tries each start in turn.
            before = self._re2.search(text[:-1])
            if before is not None and (found is None or before.start() < found.start()):
                found = before
        return found

    def probe(self) -> None:
        """Search answers built to be hard for this pattern; :class:`UnsafePattern` when one
        costs more than :data:`PROBE_BUDGET` (run once, when the pattern is saved).

        RE2 is linear in the answer, but a pattern whose automaton explodes (``[ab]*a[ab]{500}c``
        over a run of a and b) costs time per character in proportion to its size.
        Measured in CPU time of this thread, so a busy machine does not refuse a pattern.
        """
        for text in _probes(self.pattern):
            started = time.thread_time()
            self.search(text)
            spent = time.thread_time() - started
            if spent > PROBE_BUDGET:
                per_mb = spent * (1024 * 1024 / len(text))
                raise UnsafePattern(
                    f"the pattern is too slow to run safely: about {per_mb:.1f} s of CPU per MB "
                    f"of a hostile answer (at most {_PER_MB:g}); simplify its repeats"
                )

    def __repr__(self) -> str:
        return f"SafeRegex({self.pattern!r})"


@functools.lru_cache(maxsize=1024)
def compile_regex(
    pattern: str, *, ignore_case: bool = False, capture: bool = True, literal: bool = False
) -> SafeRegex:
    """Compile ``pattern`` for safe searching; :class:`UnsafePattern` says why not.

    Compiled patterns are shared (RE2's are safe to search from many threads), so
    every worker's rules of one pattern hold one automaton.
    """
    return SafeRegex(pattern, ignore_case=ignore_case, capture=capture, literal=literal)


def checked_regex(
    pattern: str, *, ignore_case: bool = False, capture: bool = True, literal: bool = False
) -> SafeRegex:
    """:func:`compile_regex`, then :meth:`SafeRegex.probe` (once per pattern per process):
    what validation calls when an integration is saved."""
    regex = compile_regex(pattern, ignore_case=ignore_case, capture=capture, literal=literal)
    verdict = _probe_verdict(regex)
    if verdict:
        raise UnsafePattern(verdict)
    return regex


@functools.lru_cache(maxsize=1024)
def _probe_verdict(regex: SafeRegex) -> str:
    try:
        regex.probe()
    except UnsafePattern as exc:
        return str(exc)
    return ""


def _probes(pattern: str) -> list[str]:
    """Answers that are hard for ``pattern``: long runs of the characters it names.

    A pattern's automaton explodes on the texts its own classes and literals match
    over and over, so each probe is a run of one letter, or a random mix of the
    characters of one of its bracketed classes or of all its letters and digits.
    """
    counted = _COUNTS.sub("", pattern)  # the digits of {2,5} are no characters it matches
    letters = "".join(sorted({c for c in counted if c.isalnum()}))
    alphabets = {"a", string.printable, letters}
    if 3 <= len(letters) <= 6:  # (a|b)*a(a|b){300}c explodes on a and b, without the c
        alphabets.update(letters.replace(c, "") for c in letters)
    for members in _CLASSES.findall(counted):
        alphabets.add("".join(sorted({c for c in members if c.isalnum()})))
    return [_probe_text(a) for a in sorted(a for a in alphabets if a)[:12]]


_PER_MB = round(PROBE_BUDGET * 1024 * 1024 / PROBE_LENGTH, 1)
_COUNTS = re.compile(r"\{\d*(?:,\d*)?\}")
_CLASSES = re.compile(r"\[\^?(\]?[^\]]*)\]")


@functools.lru_cache(maxsize=64)
def _probe_text(alphabet: str) -> str:
    if len(alphabet) == 1:
        return alphabet * PROBE_LENGTH
    rng = random.Random(alphabet)  # the same probe for the same alphabet
    return "".join(rng.choices(alphabet, k=PROBE_LENGTH))


def _translate(pattern: str) -> str:
    """Python-only escapes spelled the way RE2 knows them (``\\Z``, ``\\u``, ``\\U``, ``\\N{}``)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char != "\\" or i + 1 == n:
            out.append(char)
            i += 1
            continue
        escape = pattern[i + 1]
        if escape == "Z":
            out.append("\\z")
            i += 2
        elif escape in "uU":
            width = 4 if escape == "u" else 8
            out.append(f"\\x{{{pattern[i + 2 : i + 2 + width]}}}")
            i += 2 + width
        elif escape == "N" and pattern.startswith("{", i + 2):
            end = pattern.index("}", i + 3)  # re.compile accepted it: the brace is there
            out.append(f"\\x{{{ord(unicodedata.lookup(pattern[i + 3 : end])):x}}}")
            i = end + 1
        else:
            out.append(pattern[i : i + 2])
            i += 2
    return "".join(out)


def _explain(exc: Exception) -> str:
    """Why RE2 refused a pattern Python accepts, in an operator's words."""
    said = exc.args[0] if exc.args else exc
    message = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
    if message.startswith("invalid perl operator: "):
        construct = message.removeprefix("invalid perl operator: ")[:3]
        what = _UNSUPPORTED.get(construct, "inline flags other than (?i), (?m) and (?s) are")
        return f"{what} not supported: {_WHY}"
    if message.startswith("invalid escape sequence: \\") and message[-1:].isdigit():
        return f"backreferences (\\1, (?P=name)) are not supported: {_WHY}"
    if message.startswith("bad repetition operator: ") and message.endswith("+"):
        return f"possessive repeats (a*+, a++, a{{2}}+) are not supported: {_WHY}"
    if message.startswith("invalid repetition size"):
        return f"a repeat count is at most 1000, nested counts multiplied ({message}): {_WHY}"
    if "too large" in message or "too big" in message:
        return f"the pattern is too large to run safely ({message}); repeat less: {_WHY}"
    return f"not supported ({message}): {_WHY}"

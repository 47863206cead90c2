"""``--weights-map``: a JSON object of regex -> replacement applied in order to checkpoint keys.

A weights map is a user file, so its patterns are data that must not hang the run. Python's
regex engine backtracks: ``(a+)+$`` against a long key takes exponential time. Three bounds keep
renaming linear in practice and finite always:

- at read time, patterns longer than ``MAX_PATTERN_CHARS``, more than ``MAX_RULES`` rules, a
  repetition nested inside an unbounded repetition (``(a+)+``, ``(a|ab)*``) and backreferences
  (which make matching NP-hard) are refused;
- keys longer than ``MAX_KEY_CHARS`` are refused (checkpoint keys are dotted module paths);
- in the main thread all substitutions together run under ``TIME_LIMIT_S`` (SIGALRM; the
  regex engine checks signals while it backtracks).
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parser  # type: ignore[attr-defined]
from typing import Any

from foadx.errors import WeightsError
from foadx.untrusted import read_json

MAX_FILE_BYTES = 1_000_000
MAX_RULES = 1000
MAX_PATTERN_CHARS = 1000
MAX_KEY_CHARS = 4096
TIME_LIMIT_S = 5.0

_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT)
_BACKREFERENCES = (sre_constants.GROUPREF, sre_constants.GROUPREF_EXISTS, sre_constants.GROUPREF_IGNORE,
                   sre_constants.GROUPREF_LOC_IGNORE, sre_constants.GROUPREF_UNI_IGNORE)


def read_weights_map(path: str | Path) -> list[tuple[str, str]]:
    """The rules of a weights-map file, in file order.

    Args:
        path: a JSON object ``{"regex": "replacement", ...}`` (``re.sub`` syntax).

    Returns:
        ``[(pattern, replacement), ...]``, each pattern compiled and checked.

    Raises:
        BadInputError: not a regular file, over ``MAX_FILE_BYTES``, not JSON or nested too deep.
        WeightsError: not an object of strings, more than ``MAX_RULES`` rules, or a pattern
            that is invalid, too long, nests repetitions or uses a backreference.
    """
    mapping = read_json(path, "weights map", MAX_FILE_BYTES)
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise WeightsError(f"weights map {path} must be a JSON object of regex -> replacement")
    if len(mapping) > MAX_RULES:
        raise WeightsError(f"weights map {path} has {len(mapping)} rules; at most {MAX_RULES}")
    for pattern in mapping:
        check_pattern(pattern, str(path))
    return list(mapping.items())


def check_pattern(pattern: str, source: str = "weights map") -> None:
    """Refuses a pattern that could backtrack exponentially.

    Raises:
        WeightsError: longer than ``MAX_PATTERN_CHARS``, not a regex, a repetition inside an
            unbounded repetition, or a backreference.
    """
    if len(pattern) > MAX_PATTERN_CHARS:
        raise WeightsError(f"{source}: a pattern of {len(pattern)} characters; at most {MAX_PATTERN_CHARS}")
    try:
        parsed = sre_parser.parse(pattern)
    except (re.error, RecursionError, OverflowError) as error:
        raise WeightsError(f"{source}: bad regex {pattern[:80]!r}: {error}") from error
    problem = _backtracking_risk(list(parsed), inside_unbounded=False)
    if problem:
        raise WeightsError(f"{source}: regex {pattern[:80]!r} {problem}, which can backtrack for hours; "
                           "write the repetition once (e.g. a+ instead of (a+)+)")


def _backtracking_risk(items: list[tuple[Any, Any]], inside_unbounded: bool) -> str | None:
    for op, argument in items:
        if op in _BACKREFERENCES:
            return "uses a backreference"
        if op in _REPEATS:
            _, high, body = argument
            if inside_unbounded and high > 1:
                return "nests a repetition inside an unbounded repetition"
            unbounded = inside_unbounded or high == sre_constants.MAXREPEAT or high > 64
            found = _backtracking_risk(list(body), unbounded)
        elif op is sre_constants.BRANCH:
            if inside_unbounded and len(argument[1]) > 1:
                return "repeats an alternation without bound"
            found = next(filter(None, (_backtracking_risk(list(b), inside_unbounded) for b in argument[1])), None)
        else:
            found = next(filter(None, (_backtracking_risk(list(s), inside_unbounded) for s in _children(op, argument))),
                         None)
        if found:
            return found
    return None


def _children(op: Any, argument: Any) -> list[Any]:
    """The sub-patterns of a group, lookaround or atomic group (other opcodes have none)."""
    if op is sre_constants.SUBPATTERN:
        return [argument[3]]
    if op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
        return [argument[1]]
    if op is sre_constants.ATOMIC_GROUP:
        return [argument]
    return []


def rename_keys(keys: list[str], rules: list[tuple[str, str]]) -> list[str]:
    """``keys`` with every rule applied in order (``re.sub``), one result per key.

    Raises:
        WeightsError: a key longer than ``MAX_KEY_CHARS``, a rule that cannot be applied (a
            replacement naming a missing group), or more than ``TIME_LIMIT_S`` seconds of work.
    """
    long_key = next((key for key in keys if len(key) > MAX_KEY_CHARS), None)
    if long_key is not None:
        raise WeightsError(f"a checkpoint key of {len(long_key)} characters (at most {MAX_KEY_CHARS}): "
                           "not a state dict of module paths")
    for pattern, _ in rules:
        check_pattern(pattern)
    with _time_limit(TIME_LIMIT_S):
        for pattern, replacement in rules:
            compiled = re.compile(pattern)
            try:
                keys = [compiled.sub(replacement, key) for key in keys]
            except (re.error, IndexError) as error:  # e.g. a replacement naming a group the regex lacks
                raise WeightsError(f"weights map: cannot apply {pattern!r} -> {replacement!r}: {error}") from error
    return keys


class _Expired(Exception):
    pass


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupts the block after ``seconds`` (main thread only: signals go there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: Any) -> None:
        raise _Expired

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Expired:
        raise WeightsError(f"weights map: renaming the checkpoint keys took more than {seconds:g} s; "
                           "simplify its patterns") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

"""Data quality: declarative rules checked chunk by chunk, with exact results for any chunking.

Rules are plain dicts fixed in DAG code (``rules=[{"type": "not_null", "column": "id"}, ...]``). Every rule
has a ``type``, an optional ``name`` (default ``"<type>(<column>)"``, made unique with ``#<n>``), a
``severity`` (``"error"``, default, or ``"warning"``) and a ``threshold``: the largest failure ratio at which
the rule still passes (default ``0.0``: one failing value fails the rule).

=================  ==============================================  =============================================
``type``           other keys                                      a row fails when
=================  ==============================================  =============================================
``not_null``       ``column``                                      the value is null (None, NaN, NaT)
``unique``         ``column`` or ``columns`` (default: all)        its key equals an EARLIER row's key (source
                                                                   order, across chunks and files). Null keys
                                                                   compare equal, as in ``DataFrame.duplicated``
``between``        ``column``, ``min`` and/or ``max``,             the value is outside the bounds (or cannot be
                   ``inclusive`` (default true)                    compared with them, e.g. text vs a number)
``min`` / ``max``  ``column``, ``value``, ``inclusive``            the value is below ``min`` / above ``max``
``allowed_values`` ``column``, ``values`` (a list)                 the value is not in ``values``
``regex``          ``column``, ``pattern``, ``match``              the text of the value does not match
                   (``"full"``, default, or ``"search"``)
``type``           ``column``, ``dtype`` (``integer``, ``float``,   the value cannot be read as ``dtype`` (text in
                   ``boolean``, ``date``, ``datetime``,             a numeric column, an impossible date like
                   ``string``), ``format`` (dates; default          2026-02-30)
                   ``"ISO8601"``)
``length``         ``column`` (a list, large list or fixed-size     the list has fewer than ``min`` or more than
                   list column), ``min`` and/or ``max``             ``max`` elements (bounds inclusive)
``row_count``      ``min`` and/or ``max``                          (dataset rule) the row count is out of bounds
``expression``     ``expression`` (see :class:`SafeExpression`)    the expression is not True for the row
=================  ==============================================  =============================================

Value rules (between, min, max, allowed_values, regex, type, length) evaluate non-null values only; ``not_null``,
``unique`` and ``expression`` evaluate every row; ``row_count`` evaluates the dataset once.

Report (``finalize``), JSON-safe:

==================  ======================================================================================
key                 meaning
==================  ======================================================================================
``format_version``  ``1``
``rows``            rows checked
``rows_failed``     rows that broke at least one row rule (the quarantined rows)
``score``           mean of ``1 - failure_ratio`` over rules that evaluated something (null when none did)
``passed``          true when every rule passed
``rules_passed``    number of rules that passed; ``rules_failed`` the others
``failed_rules``    names of the failed rules, in rule order
``rules``           one dict per rule, in rule order: ``name``, ``type``, ``columns``, ``severity``,
                    ``threshold``, ``evaluated``, ``failed``, ``failure_ratio`` (null when nothing was
                    evaluated), ``passed``; ``unique`` rules add ``distinct_keys``
==================  ======================================================================================

Row output (the job's output parts, what a downstream job reads): the rows that broke no row rule,
unchanged. Quarantine (``{output}/g*/quarantine/``, listed under ``quarantine`` in the committed manifest,
``read_output(uri, quarantine=True)``): every row that broke a row rule, with its values (unless
``quarantine_values=False``) plus ``_source_file_index`` (index of the source file in sorted order),
``_source_row`` (0-based row within that file) and ``_failed_rules`` (list of rule names).

Exactness: counts are sums of per-chunk integers. ``unique`` uses the engine's statistics pass: pass 1 keeps,
per chunk, each distinct 64-bit key hash with its smallest global position ``file_index * 2**40 + row`` and
whether it repeats in the chunk; a streaming k-way merge gives the distinct count and, for the keys that
occur more than once, their global first position; pass 2 marks a row duplicate iff its key is one of those
and that first position is smaller than its own. The only inexactness is a 64-bit hash collision
(probability about n^2 / 2^65, see :mod:`~airflow_batch_provider.processors.hashing`).

Memory: large per-chunk key runs go to binary side files under ``{output}/g*/fit/g*/_keys/`` and are merged
with bounded memory; only the repeated keys are kept, memory-mapped and shared by the forked workers
(see ``docs/processors/data_quality.md``). No Airflow imports.
"""

from __future__ import annotations

import ast
import math
import operator as op
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.processors import (
    arrow_hashing,
    hashing,
    nested_paths,
    quality_defaults,
    side_files,
)
from airflow_batch_provider.processors.base import BaseProcessor, ChunkContext, ChunkResult, check_columns
from airflow_batch_provider.processors.catalog import did_you_mean
from airflow_batch_provider.processors.frames import (
    arrow_to_pandas_column,
    kind_of_frame,
    like,
    to_arrow,
)

FORMAT_VERSION = 1
STATE_VERSION = 2  # fitted state: distinct counts + repeated keys (v1: every key's first position)
POSITION_BASE = 2**40
SEVERITIES = ("warning", "error")
DTYPES = ("integer", "float", "boolean", "date", "datetime", "string")
_ALIASES = {
    "int": "integer",
    "number": "float",
    "numeric": "float",
    "bool": "boolean",
    "timestamp": "datetime",
    "str": "string",
    "text": "string",
}
_TRUE_FALSE = {"true", "false", "t", "f", "yes", "no", "y", "n", "1", "0"}
_COMMON_KEYS = {"type", "name", "severity", "threshold", "column", "columns"}
_RULE_KEYS: dict[str, set[str]] = {
    "not_null": set(),
    "unique": set(),
    "between": {"min", "max", "inclusive"},
    "min": {"value", "inclusive"},
    "max": {"value", "inclusive"},
    "allowed_values": {"values"},
    "regex": {"pattern", "match"},
    "type": {"dtype", "format"},
    "length": {"min", "max"},
    "row_count": {"min", "max"},
    "expression": {"expression"},
}
_NEEDS_COLUMN = {"not_null", "between", "min", "max", "allowed_values", "regex", "type", "length"}


# -- a safe expression evaluator ------------------------------------------------------------------------------
class SafeExpression:
    """A row expression over columns, parsed with :mod:`ast` and evaluated from a whitelist; never ``eval``.

    Allowed: column names (``amount``; any name with ``col("amount eur")``), literals (numbers, strings,
    True/False/None), ``+ - * / // % **``, comparisons (``== != < <= > >=``, chained ``0 <= x < 1``,
    ``in``/``not in`` a list of literals), ``and``/``or``/``not``, and the functions ``col``, ``isnull``,
    ``notnull``, ``abs``, ``length``, ``lower``, ``upper``. Anything else (attributes, subscripts, lambdas,
    other calls, comprehensions) is refused at parse time, and so is nesting deeper than ``MAX_DEPTH``.
    :meth:`check_types` checks it against the column types before any row is read. A comparison with a null
    value is False (as in pandas), so ``amount > 0`` fails rows where ``amount`` is null; write
    ``isnull(amount) or amount > 0`` to accept them.
    """

    MAX_LENGTH = 4000
    MAX_NODES = 500
    MAX_DEPTH = 100
    _BIN: dict[type, Callable[[Any, Any], Any]] = {
        ast.Add: op.add,
        ast.Sub: op.sub,
        ast.Mult: op.mul,
        ast.Div: op.truediv,
        ast.FloorDiv: op.floordiv,
        ast.Mod: op.mod,
        ast.Pow: op.pow,
    }
    _CMP: dict[type, Callable[[Any, Any], Any]] = {
        ast.Eq: op.eq,
        ast.NotEq: op.ne,
        ast.Lt: op.lt,
        ast.LtE: op.le,
        ast.Gt: op.gt,
        ast.GtE: op.ge,
    }
    _FUNCS: dict[str, Callable[[Any], Any]] = {
        "isnull": lambda v: v.isna() if isinstance(v, pd.Series) else pd.isna(v),
        "notnull": lambda v: v.notna() if isinstance(v, pd.Series) else not pd.isna(v),
        "abs": abs,
        "length": lambda v: v.astype("string").str.len() if isinstance(v, pd.Series) else len(str(v)),
        "lower": lambda v: v.astype("string").str.lower() if isinstance(v, pd.Series) else str(v).lower(),
        "upper": lambda v: v.astype("string").str.upper() if isinstance(v, pd.Series) else str(v).upper(),
    }

    def __init__(self, text: str, where: str = "expression") -> None:
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}: give a non-empty expression string")
        if len(text) > self.MAX_LENGTH:
            raise ConfigError(f"{where}: the expression is longer than {self.MAX_LENGTH} characters")
        self.text = text
        self.where = where
        try:
            self.tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as err:
            raise ConfigError(f"{where}: cannot parse {text!r}: {err.msg}") from None
        except (RecursionError, MemoryError):
            raise ConfigError(f"{where}: the expression is nested too deeply to parse") from None
        nodes = list(ast.walk(self.tree))
        if len(nodes) > self.MAX_NODES:
            raise ConfigError(f"{where}: the expression is too complex (> {self.MAX_NODES} syntax nodes)")
        if _depth(self.tree.body) > self.MAX_DEPTH:
            raise ConfigError(f"{where}: the expression is nested more than {self.MAX_DEPTH} levels deep")
        self.columns: set[str] = set()
        self._check(self.tree.body)

    # validation ---------------------------------------------------------------------------------------------
    def _refuse(self, node: ast.AST, why: str = "") -> ConfigError:
        what = ast.unparse(node) if isinstance(node, ast.expr) else type(node).__name__
        return ConfigError(
            f"{self.where}: {what!r} is not allowed in a rule expression{why}; allowed: column "
            "names, col('name'), literals, arithmetic, comparisons, and/or/not, isnull, notnull, "
            "abs, length, lower, upper"
        )

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, str, bool, type(None))):
                raise self._refuse(node)
        elif isinstance(node, ast.Name):
            self.columns.add(node.id)
        elif isinstance(node, ast.BoolOp):
            for v in node.values:
                self._check(v)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
            self._check(node.operand)
        elif isinstance(node, ast.BinOp) and type(node.op) in self._BIN:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.Compare):
            self._check_compare(node)
        elif isinstance(node, ast.Call):
            self._check_call(node)
        else:
            raise self._refuse(node)

    def _check_compare(self, node: ast.Compare) -> None:
        self._check(node.left)
        for cmp, right in zip(node.ops, node.comparators, strict=False):
            if isinstance(cmp, (ast.In, ast.NotIn)):
                if not isinstance(right, (ast.List, ast.Tuple, ast.Set)) or not all(
                    isinstance(e, ast.Constant) for e in right.elts
                ):
                    raise self._refuse(right, " (the right side of 'in' must be a list of literals)")
                for e in right.elts:
                    self._check(e)
            elif type(cmp) in self._CMP:
                self._check(right)
            else:
                raise self._refuse(node)

    def _check_call(self, node: ast.Call) -> None:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if node.keywords or len(node.args) != 1 or name not in ({"col"} | set(self._FUNCS)):
            raise self._refuse(node)
        arg = node.args[0]
        if name == "col":
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise self._refuse(node, " (col() takes one column name as a string)")
            self.columns.add(arg.value)
            return
        self._check(arg)

    # static types ------------------------------------------------------------------------------------------
    def check_types(self, kinds: Mapping[str, str]) -> None:
        """Refuse, before any row is read, what evaluating would refuse on every row: arithmetic other than
        ``+`` on text, text ``+`` a number, ``-``/``abs`` of text, ordering text against a number. ``kinds``
        maps column -> ``number``/``text``/``bool``/``datetime``/``other`` (see :func:`column_kinds`)."""
        self._kind(self.tree.body, kinds)

    def _kind(self, node: ast.AST, kinds: Mapping[str, str]) -> str | None:
        """The kind of ``node``'s value (None: unknown); raises ConfigError where the types cannot work."""
        if isinstance(node, ast.Constant):
            return _literal_kind(node.value)
        if isinstance(node, ast.Name):
            return kinds.get(node.id)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):  # the literals right of 'in'
            return None
        if isinstance(node, ast.BinOp):
            return self._binop_kind(node, self._kind(node.left, kinds), self._kind(node.right, kinds))
        if isinstance(node, ast.Call):
            return self._call_kind(node, kinds)
        return self._logic_kind(node, kinds)

    def _logic_kind(self, node: ast.AST, kinds: Mapping[str, str]) -> str | None:
        """Comparisons, and/or/not, and unary signs."""
        if isinstance(node, ast.Compare):
            self._check_order(node, [self._kind(c, kinds) for c in (node.left, *node.comparators)])
            return "bool"
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self._kind(value, kinds)
            return "bool"
        assert isinstance(node, ast.UnaryOp)  # _check allowed nothing else
        operand = self._kind(node.operand, kinds)
        if isinstance(node.op, ast.Not):
            return "bool"
        self._refuse_text(node, operand, "a sign")
        return operand if operand == "number" else None

    def _call_kind(self, node: ast.Call, kinds: Mapping[str, str]) -> str | None:
        assert isinstance(node.func, ast.Name)
        name = node.func.id
        if name == "col":
            return kinds.get(node.args[0].value)  # type: ignore[attr-defined]
        arg = self._kind(node.args[0], kinds)
        if name == "abs":
            self._refuse_text(node, arg, "abs()")
        return {"isnull": "bool", "notnull": "bool", "abs": "number", "length": "number"}.get(name, "text")

    def _binop_kind(self, node: ast.BinOp, left: str | None, right: str | None) -> str | None:
        if not isinstance(node.op, ast.Add):
            self._refuse_text(node, "text" if "text" in (left, right) else None, "arithmetic other than '+'")
        elif {left, right} == {"text", "number"}:
            raise ConfigError(f"{self.where}: {ast.unparse(node)!r}: cannot add text and a number")
        if left == right and left in ("number", "text"):
            return left
        return None

    def _check_order(self, node: ast.Compare, operands: list[str | None]) -> None:
        for cmp, left, right in zip(node.ops, operands, operands[1:], strict=False):
            ordering = isinstance(cmp, (ast.Lt, ast.LtE, ast.Gt, ast.GtE))
            if ordering and {left, right} == {"text", "number"}:
                raise ConfigError(
                    f"{self.where}: {ast.unparse(node)!r}: cannot order text against a number; "
                    "compare like with like, e.g. length(x) < 5"
                )

    def _refuse_text(self, node: ast.AST, kind: str | None, what: str) -> None:
        if kind == "text":
            raise ConfigError(f"{self.where}: {ast.unparse(node)!r}: {what} does not work on text")

    # evaluation --------------------------------------------------------------------------------------------
    def evaluate(self, frame: pd.DataFrame) -> np.ndarray:
        """A boolean array: True where the expression holds for the row (null and non-True results are False)."""
        missing = sorted(self.columns - {str(c) for c in frame.columns})
        if missing:
            raise ConfigError(
                f"{self.where}: unknown column(s) {missing}; columns: {[str(c) for c in frame.columns]}"
            )
        value = self._eval(self.tree.body, frame)
        return _truth(value, len(frame))

    def _eval(self, node: ast.AST, frame: pd.DataFrame) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return frame[node.id]
        if isinstance(node, ast.BoolOp):
            parts = [_truth(self._eval(v, frame), len(frame)) for v in node.values]
            return (
                np.logical_and.reduce(parts) if isinstance(node.op, ast.And) else np.logical_or.reduce(parts)
            )
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, frame)
            if isinstance(node.op, ast.Not):
                return ~_truth(value, len(frame))
            return -value if isinstance(node.op, ast.USub) else +value
        if isinstance(node, ast.BinOp):
            return self._binop(node, self._eval(node.left, frame), self._eval(node.right, frame))
        if isinstance(node, ast.Compare):
            return self._compare(node, frame)
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        if node.func.id == "col":
            return frame[node.args[0].value]  # type: ignore[attr-defined]
        return self._FUNCS[node.func.id](self._eval(node.args[0], frame))

    def _binop(self, node: ast.BinOp, left: Any, right: Any) -> Any:
        if not isinstance(node.op, ast.Add) and (_is_text(left) or _is_text(right)):
            raise ConfigError(f"{self.where}: {ast.unparse(node)!r}: only '+' works on text")
        fn = self._BIN[type(node.op)]
        if not isinstance(left, pd.Series) and not isinstance(right, pd.Series) and not _is_text(left):
            try:  # two literals: float arithmetic, so 10**10**10 overflows instead of hanging
                return fn(float(left), float(right))
            except (OverflowError, ZeroDivisionError, TypeError, ValueError) as err:
                raise ConfigError(f"{self.where}: {ast.unparse(node)!r}: {err}") from None
        with np.errstate(all="ignore"):
            return fn(left, right)

    def _compare(self, node: ast.Compare, frame: pd.DataFrame) -> np.ndarray:
        left = self._eval(node.left, frame)
        out = np.ones(len(frame), dtype=bool)
        for cmp, right_node in zip(node.ops, node.comparators, strict=False):
            if isinstance(cmp, (ast.In, ast.NotIn)):
                values = [e.value for e in right_node.elts]  # type: ignore[attr-defined]
                series = left if isinstance(left, pd.Series) else pd.Series([left] * len(frame))
                hit = series.isin(values).to_numpy(dtype=bool, na_value=False)
                result = hit if isinstance(cmp, ast.In) else ~hit & series.notna().to_numpy()
                right = left
            else:
                right = self._eval(right_node, frame)
                try:
                    result = _truth(self._CMP[type(cmp)](left, right), len(frame))
                except TypeError as err:
                    raise ConfigError(
                        f"{self.where}: cannot compare in {ast.unparse(node)!r}: {err}"
                    ) from None
            out = out & result
            left = right
        return out


def _depth(node: ast.AST) -> int:
    """How deeply expressions nest under ``node`` (iterative: a deep tree must not exhaust the stack)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((c, depth + 1) for c in ast.iter_child_nodes(current) if isinstance(c, ast.expr))
    return deepest


def _literal_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "text" if isinstance(value, str) else None


def column_kinds(frame: pd.DataFrame) -> dict[str, str]:
    """Column -> the kind :meth:`SafeExpression.check_types` reasons about (text as evaluation sees it)."""
    types = pd.api.types
    out = {}
    for name, dtype in frame.dtypes.items():
        if types.is_bool_dtype(dtype):
            kind = "bool"
        elif types.is_numeric_dtype(dtype):
            kind = "number"
        elif types.is_datetime64_any_dtype(dtype):
            kind = "datetime"
        elif types.is_string_dtype(dtype) or types.is_object_dtype(dtype):
            kind = "text"
        else:
            kind = "other"
        out[str(name)] = kind
    return out


def _is_text(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, pd.Series) and (
        pd.api.types.is_string_dtype(value.dtype) or value.dtype == object
    )


def _truth(value: Any, n: int) -> np.ndarray:
    """A boolean array of length ``n``: True only where ``value`` is True (nulls are False)."""
    if isinstance(value, pd.Series):
        if pd.api.types.is_bool_dtype(value.dtype) and not value.hasnans:
            return value.to_numpy(dtype=bool)
        return (value.fillna(False) == True).to_numpy(dtype=bool, na_value=False)  # noqa: E712
    if isinstance(value, np.ndarray):
        return value.astype(bool) if value.dtype == bool else value == True  # noqa: E712
    return np.full(n, bool(value is True or (isinstance(value, (np.bool_, bool)) and value)), dtype=bool)


# -- rules ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """One validated rule."""

    name: str
    type: str
    columns: tuple[str, ...]
    severity: str
    threshold: float
    options: dict[str, Any] = field(default_factory=dict)
    expression: SafeExpression | None = None

    @property
    def column(self) -> str:
        return self.columns[0]


def parse_rules(rules: Any) -> list[Rule]:
    """Validate rule dicts into :class:`Rule` objects; every problem raises ``ConfigError`` naming the rule."""
    if isinstance(rules, Mapping) or isinstance(rules, (str, bytes)) or not isinstance(rules, Sequence):
        raise ConfigError("rules: give a list of rule dicts, e.g. [{'type': 'not_null', 'column': 'id'}]")
    if not rules:
        raise ConfigError("rules: give at least one rule")
    out: list[Rule] = []
    names: set[str] = set()
    for i, raw in enumerate(rules):
        rule = _parse_rule(raw, i)
        if rule.name in names:
            if "name" in raw:
                raise ConfigError(
                    f"rules[{i}]: the name {rule.name!r} is used twice; rule names must be unique"
                )
            rule = Rule(
                f"{rule.name}#{i}",
                rule.type,
                rule.columns,
                rule.severity,
                rule.threshold,
                rule.options,
                rule.expression,
            )
        names.add(rule.name)
        out.append(rule)
    return out


def _parse_rule(raw: Any, i: int) -> Rule:
    where = f"rules[{i}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a rule is a dict with a 'type', got {raw!r}")
    kind = raw.get("type")
    if kind not in _RULE_KEYS:
        raise ConfigError(
            f"{where}: unknown rule type {kind!r}{did_you_mean(str(kind), _RULE_KEYS)}; "
            f"use one of {', '.join(_RULE_KEYS)}"
        )
    unknown = sorted(set(raw) - _COMMON_KEYS - _RULE_KEYS[kind])
    if unknown:
        allowed = sorted(_COMMON_KEYS | _RULE_KEYS[kind])
        raise ConfigError(
            f"{where} ({kind}): unknown key(s) {unknown}{did_you_mean(str(unknown[0]), allowed)}; "
            f"allowed: {allowed}"
        )
    columns = _rule_columns(raw, kind, where)
    severity = raw.get("severity", "error")
    if severity not in SEVERITIES:
        raise ConfigError(f"{where}: severity must be one of {SEVERITIES}, got {severity!r}")
    threshold = raw.get("threshold", 0.0)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ConfigError(
            f"{where}: threshold is the largest failure ratio that still passes, in [0, 1]; got {threshold!r}"
        )
    options = {k: v for k, v in raw.items() if k in _RULE_KEYS[kind]}
    _check_options(kind, options, where)
    expression = SafeExpression(options["expression"], where) if kind == "expression" else None
    default = f"{kind}({', '.join(columns)})" if columns else kind
    name = raw.get("name", default)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: name must be a non-empty string")
    return Rule(name, kind, columns, severity, float(threshold), options, expression)


def _rule_columns(raw: Mapping[str, Any], kind: str, where: str) -> tuple[str, ...]:
    if "column" in raw and "columns" in raw:
        raise ConfigError(f"{where}: give 'column' or 'columns', not both")
    if "columns" in raw:
        if kind != "unique":
            raise ConfigError(f"{where}: only 'unique' rules take 'columns'; give 'column'")
        cols = raw["columns"]
        if isinstance(cols, str) or not isinstance(cols, Sequence) or not cols:
            raise ConfigError(f"{where}: columns must be a non-empty list of column names")
        return tuple(str(c) for c in cols)
    if "column" in raw:
        if kind in ("row_count", "expression"):
            raise ConfigError(f"{where}: {kind} rules take no 'column'")
        return (str(raw["column"]),)
    if kind in _NEEDS_COLUMN:
        raise ConfigError(f"{where}: a {kind} rule needs 'column'")
    return ()


def _check_bounds(kind: str, options: dict[str, Any], where: str) -> None:
    if kind in ("between", "row_count", "length") and "min" not in options and "max" not in options:
        raise ConfigError(f"{where}: a {kind} rule needs 'min' and/or 'max'")
    if kind in ("min", "max") and "value" not in options:
        raise ConfigError(f"{where}: a {kind} rule needs 'value'")
    if kind in ("row_count", "length"):
        for key in ("min", "max"):
            v = options.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ConfigError(f"{where}: {kind} {key} must be a non-negative integer, got {v!r}")
        lo, hi = options.get("min"), options.get("max")
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"{where}: {kind} min {lo!r} is larger than max {hi!r}; no value could pass")


def _check_allowed(kind: str, options: dict[str, Any], where: str) -> None:
    values = options.get("values")
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, set, frozenset)):
        raise ConfigError(f"{where}: allowed_values needs 'values', a list")


def _check_regex(kind: str, options: dict[str, Any], where: str) -> None:
    if options.get("match", "full") not in ("full", "search"):
        raise ConfigError(f"{where}: match must be 'full' or 'search'")
    try:
        re.compile(options.get("pattern"))  # type: ignore[type-var]
    except (re.error, TypeError) as err:
        raise ConfigError(
            f"{where}: pattern {options.get('pattern')!r} is not a valid regex: {err}"
        ) from None


def _check_dtype(kind: str, options: dict[str, Any], where: str) -> None:
    dtype = _ALIASES.get(options.get("dtype"), options.get("dtype"))  # type: ignore[arg-type]
    if dtype not in DTYPES:
        raise ConfigError(f"{where}: dtype must be one of {DTYPES}, got {options.get('dtype')!r}")
    options["dtype"] = dtype


_OPTION_CHECKS: dict[str, Callable[[str, dict[str, Any], str], None]] = {
    "between": _check_bounds,
    "min": _check_bounds,
    "max": _check_bounds,
    "row_count": _check_bounds,
    "length": _check_bounds,
    "allowed_values": _check_allowed,
    "regex": _check_regex,
    "type": _check_dtype,
}


def _check_options(kind: str, options: dict[str, Any], where: str) -> None:
    check = _OPTION_CHECKS.get(kind)
    if check is not None:
        check(kind, options, where)


# -- row checks: each returns (evaluated mask, failed mask) ---------------------------------------------------
def _not_null(s: pd.Series, rule: Rule) -> tuple[np.ndarray, np.ndarray]:
    failed = s.isna().to_numpy(dtype=bool)
    return np.ones(len(s), dtype=bool), failed


def _bound(s: pd.Series, value: Any, where: str) -> tuple[pd.Series, Any]:
    """The column and the bound in comparable forms: (values, bound). Dates (any year) compare as timestamps of
    their midnight, in seconds."""
    import pyarrow as pa

    arrow = getattr(s.dtype, "pyarrow_dtype", None)
    if arrow is not None and pa.types.is_date(arrow):
        s = s.astype(pd.ArrowDtype(pa.timestamp("s")))
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        try:
            bound = pd.Timestamp(value)
            tz = getattr(s.dtype, "tz", None)
            if tz is not None and bound.tzinfo is None:
                bound = bound.tz_localize(tz)
            return s, bound
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{where}: bound {value!r} is not a timestamp: {err}") from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
            return s, value
        return pd.to_numeric(s, errors="coerce"), value
    return s.astype("string"), str(value)


def _between(s: pd.Series, rule: Rule) -> tuple[np.ndarray, np.ndarray]:
    present = s.notna().to_numpy(dtype=bool)
    opts = rule.options
    lo, hi = opts.get("min"), opts.get("max")
    if rule.type == "min":
        lo = opts["value"]
    elif rule.type == "max":
        hi = opts["value"]
    inclusive = opts.get("inclusive", True)
    ok = np.array(present, dtype=bool, copy=True)
    for bound, ge in ((lo, True), (hi, False)):
        if bound is None:
            continue
        values, b = _bound(s, bound, f"rule {rule.name!r}")
        try:
            if ge:
                cmp = values >= b if inclusive else values > b
            else:
                cmp = values <= b if inclusive else values < b
        except TypeError as err:
            raise ConfigError(
                f"rule {rule.name!r}: cannot compare column {rule.column!r} with {bound!r}: {err}"
            ) from None
        ok = ok & cmp.fillna(False).to_numpy(dtype=bool, na_value=False)
    return present, present & ~ok


def _allowed(s: pd.Series, rule: Rule) -> tuple[np.ndarray, np.ndarray]:
    present = s.notna().to_numpy(dtype=bool)
    hit = s.isin(list(rule.options["values"])).to_numpy(dtype=bool, na_value=False)
    return present, present & ~hit


def _regex(s: pd.Series, rule: Rule) -> tuple[np.ndarray, np.ndarray]:
    present = s.notna().to_numpy(dtype=bool)
    text = s.astype("string")
    pattern = rule.options["pattern"]
    hit = (
        text.str.fullmatch(pattern)
        if rule.options.get("match", "full") == "full"
        else text.str.contains(pattern, regex=True)
    )
    return present, present & ~hit.fillna(False).to_numpy(dtype=bool, na_value=False)


def _readable(s: pd.Series, dtype: str, fmt: str) -> np.ndarray:
    """True where the (non-null) value can be read as ``dtype``."""
    kind = s.dtype
    if dtype == "string":
        return np.ones(len(s), dtype=bool)
    if dtype in ("date", "datetime"):
        if pd.api.types.is_datetime64_any_dtype(kind):
            return np.ones(len(s), dtype=bool)
        if pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind):
            return np.zeros(len(s), dtype=bool)
        parsed = pd.to_datetime(
            s.astype("string"), errors="coerce", format=fmt
        )  # element-wise: chunk-invariant
        return parsed.notna().to_numpy(dtype=bool)
    if dtype == "boolean":
        if pd.api.types.is_bool_dtype(kind):
            return np.ones(len(s), dtype=bool)
        return (
            s.astype("string").str.strip().str.lower().isin(_TRUE_FALSE).to_numpy(dtype=bool, na_value=False)
        )
    if pd.api.types.is_bool_dtype(kind):
        return np.zeros(len(s), dtype=bool)
    numbers = (
        s
        if pd.api.types.is_numeric_dtype(kind)
        else pd.to_numeric(s.astype("string").str.strip(), errors="coerce")
    )
    ok = numbers.notna().to_numpy(dtype=bool)
    if dtype == "integer" and not pd.api.types.is_integer_dtype(numbers.dtype):
        arr = numbers.to_numpy(dtype="float64", na_value=np.nan)
        with np.errstate(invalid="ignore"):
            ok = ok & np.isfinite(arr) & (np.floor(arr) == arr)
    return ok


def _type(s: pd.Series, rule: Rule) -> tuple[np.ndarray, np.ndarray]:
    present = s.notna().to_numpy(dtype=bool)
    ok = _readable(s, rule.options["dtype"], rule.options.get("format", "ISO8601"))
    return present, present & ~ok


_VALUE_CHECKS: dict[str, Callable[[pd.Series, Rule], tuple[np.ndarray, np.ndarray]]] = {
    "not_null": _not_null,
    "between": _between,
    "min": _between,
    "max": _between,
    "allowed_values": _allowed,
    "regex": _regex,
    "type": _type,
}


def global_positions(ctx: ChunkContext, n: int) -> np.ndarray:
    """One int64 per row: ``file_index * 2**40 + row within the file`` (source order)."""
    return ctx.file_index * POSITION_BASE + ctx.start_row + np.arange(n, dtype=np.int64)


def _check_list_column(processor: str, i: int, rule: Rule, schema: Any) -> None:
    """``ConfigError`` (before any chunk) unless the ``length`` rule's column is a list column."""
    t = nested_paths.field_type(rule.column, schema, f"{processor}: rules[{i}] ({rule.name})")
    if t is not None and not is_list_type(t):
        raise ConfigError(
            f"{processor}: rules[{i}] ({rule.name}): column {rule.column!r} has type {t}; a length rule "
            "measures lists (list, large_list, fixed_size_list); for the length of text use an expression "
            "rule, e.g. \"length(col('name')) <= 10\""
        )


# -- the processor -------------------------------------------------------------------------------------------
class DataQualityProcessor(BaseProcessor):
    """Check declarative rules; quarantine failing rows; report per-rule counts and an overall score.

    :param rules: a list of rule dicts (see the module docstring for the schema). Fixed in DAG code. None (the
        default): the default assessment, rules derived from the data in the statistics pass
        (:mod:`~airflow_batch_provider.processors.quality_defaults`), listed in the report's ``assessment``.
    :param quarantine_values: True (default): failing rows are written with all their values; False: only
        ``_source_file_index``, ``_source_row`` and ``_failed_rules`` (for sensitive data).
    """

    name = "data_quality"
    # 2: spilled, repeated-keys-only unique state; 3: Arrow kernels and Arrow-buffer key hashes (an older
    # checkpoint restarts clean)
    version = "3"
    chunk_invariant = True
    #: chunks arrive as Arrow tables; rules without an Arrow kernel convert only their own columns to pandas
    input_format = "arrow"

    def __init__(
        self, rules: Sequence[Mapping[str, Any]] | None = None, quarantine_values: bool = True
    ) -> None:
        self.rules = rules
        self.quarantine_values = quarantine_values

    # parameters ----------------------------------------------------------------------------------------------
    @property
    def stats_pass(self) -> bool:  # type: ignore[override]
        """A statistics pass is needed only for ``unique`` rules, and for the default assessment (no rules)."""
        if self.rules is None:
            return True
        rules = self.rules if isinstance(self.rules, Sequence) and not isinstance(self.rules, str) else []
        return any(isinstance(r, Mapping) and r.get("type") == "unique" for r in rules)

    def _validate(self) -> list[Rule]:
        parsed = self.__dict__.get("_parsed")
        if parsed is None:
            if not isinstance(self.quarantine_values, bool):
                raise ConfigError(f"quarantine_values must be true or false, got {self.quarantine_values!r}")
            rules = self.rules if self.rules is not None else quality_defaults.current_rules(self)
            parsed = parse_rules(rules)
            self.__dict__["_parsed"] = parsed
        return parsed

    def validate(self, schema: Any) -> None:
        """The rules parse; every column a rule (or its expression) names exists in the source; expressions'
        operations fit the column types."""
        rules = self._validate()
        kinds: dict[str, str] | None = None
        for i, rule in enumerate(rules):
            columns = sorted(rule.expression.columns) if rule.expression is not None else rule.columns
            if rule.expression is None:  # struct fields (address.city): their top-level column must exist
                columns = nested_paths.source_columns(
                    columns, schema, f"{self.name}: rules[{i}] ({rule.name})"
                )
            check_columns(self.name, f"rules[{i}] ({rule.name})", columns, schema)
            if rule.type == "length":
                _check_list_column(self.name, i, rule, schema)
            if rule.expression is not None:
                kinds = kinds if kinds is not None else column_kinds(schema.empty_table().to_pandas())
                try:
                    rule.expression.check_types(kinds)
                except ConfigError as err:
                    raise ConfigError(f"{self.name}: {err}") from None

    def _unique_rules(self) -> list[Rule]:
        return [r for r in self._validate() if r.type == "unique"]

    def stats_columns(self, schema: Any) -> list[str] | None:
        """The statistics pass reads only the unique rules' key columns (all of them for a whole-row rule)."""
        rules = self._unique_rules()
        if not rules or any(not r.columns for r in rules):
            return None
        return list(
            dict.fromkeys(nested_paths.source_columns([c for r in rules for c in r.columns], schema, ""))
        )

    @staticmethod
    def _key_columns(rule: Rule, table: Any) -> list[str]:
        if not rule.columns:
            return list(table.column_names)
        return [_arrow_column(table, c, rule.name) for c in rule.columns]

    def _key_hashes(self, rule: Rule, table: Any) -> np.ndarray:
        """One uint64 per row: the hash of the rule's key (numpy over the Arrow buffers, the same in both passes)."""
        table = nested_paths.with_paths(table, rule.columns)  # struct fields as key columns
        return arrow_hashing.row_hashes(table, self._key_columns(rule, table))

    # statistics pass (unique rules) -------------------------------------------------------------------------
    def partial_stats(self, chunk: pd.DataFrame, ctx: ChunkContext) -> Any:
        """Per unique rule, a run of (distinct key hash, first position, repeated in this chunk); runs of more
        than ``hashing.SPILL_MIN_KEYS`` keys go to binary side files under ``{output_uri}/_keys/``."""
        out = {}
        table = to_arrow(chunk)
        pos = global_positions(ctx, table.num_rows)
        folder = hashing.spill_folder(ctx.work_uri or ctx.output_uri)
        for i, rule in enumerate(self._unique_rules()):
            h, p, rep = hashing.first_positions_run(self._key_hashes(rule, table), pos)
            where = f"{folder}/u{i}-f{ctx.file_index:05d}-r{ctx.start_row:012d}-{ctx.stop_row:012d}"
            out[rule.name] = hashing.run_state(h, p, rep, spill_to=where if folder else None)
        if self.rules is None:  # the default assessment's statistics
            out[quality_defaults.STATS_KEY] = quality_defaults.partial_profile(table)
        return out

    def merge_stats(self, states: list[Any]) -> Any:
        """Streaming k-way merge of the runs: the distinct count, and only the keys that occur more than once
        with their global first position (side files next to the runs' when they have some)."""
        merged = {}
        for i, rule in enumerate(self._unique_rules()):
            parts = [s[rule.name] for s in states if s and rule.name in s]
            files = [p["file"] for p in parts if "file" in p]
            spill = os.path.join(os.path.dirname(files[0]), f"u{i}-repeated") if files else None
            work = side_files.scratch_dir(files[0]) if files else None  # local even for object storage
            distinct, repeated = hashing.repeated_first_positions(parts, spill, workdir=work)
            merged[rule.name] = {"distinct": distinct, "repeated": repeated}
        if self.rules is None:
            merged[quality_defaults.STATS_KEY] = quality_defaults.merge_profiles(
                [s.get(quality_defaults.STATS_KEY) for s in states if s]
            )
        return merged

    def fit_stats(self, state: Any) -> None:
        if self.rules is None:  # derive the default assessment's rules first
            quality_defaults.fit(self, state)
        self._validate()
        state = state or {}
        self.unique_state_ = {r.name: state.get(r.name) for r in self._unique_rules()}
        self.repeated_ = {
            name: hashing.load_run((s or {}).get("repeated")) for name, s in self.unique_state_.items()
        }

    def get_state(self) -> Any:
        out: dict[str, Any] = {"format_version": STATE_VERSION, "unique": getattr(self, "unique_state_", {})}
        if self.rules is None:
            out["assessment"] = quality_defaults.fitted(self)
        return out

    def set_state(self, state: Any) -> None:
        quality_defaults.restore(self, (state or {}).get("assessment"))
        self.fit_stats((state or {}).get("unique"))

    # main pass -----------------------------------------------------------------------------------------------
    def process(self, chunk: Any, ctx: ChunkContext) -> ChunkResult:
        """Rules on the chunk's Arrow columns (``not_null``, numeric bounds and ``unique`` by Arrow kernels; the
        others on a pandas copy of their own columns only). Clean rows and quarantine come back in the form the
        chunk came in (an Arrow table from the engine)."""
        import pyarrow as pa

        rules = self._validate()
        view = _Chunk(chunk)
        n = view.table.num_rows
        row_rules = [r for r in rules if r.type != "row_count"]
        failed = np.zeros((n, len(row_rules)), dtype=bool)
        counts: dict[str, list[int]] = {}
        for j, rule in enumerate(row_rules):
            evaluated, fail = self._check(rule, view, ctx)
            failed[:, j] = fail
            counts[rule.name] = [int(np.count_nonzero(evaluated)), int(np.count_nonzero(fail))]
        broke = failed.any(axis=1)
        bad = np.flatnonzero(broke)
        state = {"rows": n, "rows_failed": len(bad), "rules": counts}
        if view.kind == "pandas":
            clean = chunk if not len(bad) else chunk.iloc[np.flatnonzero(~broke)]
            quarantine = self._quarantine(chunk, ctx, failed, bad, row_rules)
        else:
            clean = like(view.table if not len(bad) else view.table.filter(pa.array(~broke)), chunk)
            table = self._arrow_quarantine(view.table, ctx, failed, bad, row_rules)
            quarantine = None if table is None else like(table, chunk)
        return ChunkResult(rows=clean, quarantine=quarantine, state=state)

    def _check(self, rule: Rule, view: _Chunk, ctx: ChunkContext) -> tuple[np.ndarray, np.ndarray]:
        if rule.type == "unique":
            return self._duplicates(rule, view.table, ctx)
        if rule.type == "expression":
            assert rule.expression is not None
            holds = rule.expression.evaluate(view.pandas(sorted(rule.expression.columns)))
            return np.ones(view.table.num_rows, dtype=bool), ~holds
        field = nested_paths.column(view.table, rule.column)
        if rule.type == "length":
            values = (
                field
                if field is not None
                else view.table.column(_arrow_column(view.table, rule.column, rule.name))
            )
            return _lengths(rule, values)
        if field is not None:  # a struct field (address.city): processors/nested_paths.py
            fast = _arrow_check(rule, field)
            return fast if fast is not None else _VALUE_CHECKS[rule.type](arrow_to_pandas_column(field), rule)
        name = _arrow_column(view.table, rule.column, rule.name)
        fast = _arrow_check(rule, view.table.column(name))
        if fast is not None:
            return fast
        return _VALUE_CHECKS[rule.type](view.series(name), rule)

    def _arrow_quarantine(
        self, table: Any, ctx: ChunkContext, failed: np.ndarray, bad: np.ndarray, row_rules: list[Rule]
    ) -> Any:
        """:meth:`_quarantine` as an Arrow table: the failing rows (or none of their values), their source
        position and the names of the rules they broke."""
        import pyarrow as pa

        if not len(bad):
            return None
        lists, inverse = _reason_patterns(failed[bad], [r.name for r in row_rules])
        reasons = pa.array(lists, type=pa.list_(pa.large_string())).take(pa.array(inverse))
        base = table.take(pa.array(bad)) if self.quarantine_values else pa.table({})
        extra = {
            "_source_file_index": pa.array(np.full(len(bad), ctx.file_index, dtype=np.int64)),
            "_source_row": pa.array((ctx.start_row + bad).astype(np.int64)),
            "_failed_rules": reasons,
        }
        columns = [*base.columns, *extra.values()]
        names = [*base.column_names, *extra]
        return pa.Table.from_arrays(columns, names=names)

    def _duplicates(self, rule: Rule, table: Any, ctx: ChunkContext) -> tuple[np.ndarray, np.ndarray]:
        """A row is a duplicate iff its key hash occurs more than once in the source and its global first
        position is below the row's own (keys that occur once are never looked up beyond one search)."""
        repeated = getattr(self, "repeated_", None)
        if repeated is None or rule.name not in repeated:
            raise RuntimeError(
                "data_quality: unique rules need the statistics pass (fit_stats) before process"
            )
        hashes, first_pos = repeated[rule.name]
        h = self._key_hashes(rule, table)
        dup = np.zeros(len(h), dtype=bool)
        if len(hashes) and len(h):
            pos = global_positions(ctx, len(h))
            idx = np.minimum(np.searchsorted(hashes, h), len(hashes) - 1)
            hit = np.flatnonzero(hashes[idx] == h)
            dup[hit] = first_pos[idx[hit]] < pos[hit]
        return np.ones(len(h), dtype=bool), dup

    def _quarantine(
        self,
        chunk: pd.DataFrame,
        ctx: ChunkContext,
        failed: np.ndarray,
        bad: np.ndarray,
        row_rules: list[Rule],
    ) -> pd.DataFrame | None:
        if not len(bad):
            return None
        reasons = _reason_lists(failed[bad], [r.name for r in row_rules])
        base = (
            chunk.iloc[bad].reset_index(drop=True)
            if self.quarantine_values
            else pd.DataFrame(index=range(len(bad)))
        )
        return base.assign(
            _source_file_index=np.full(len(bad), ctx.file_index, dtype=np.int64),
            _source_row=(ctx.start_row + bad).astype(np.int64),
            _failed_rules=pd.Series(reasons, dtype=object),
        )

    # aggregation ---------------------------------------------------------------------------------------------
    def merge(self, states: list[Any]) -> Any:
        out: dict[str, Any] = {"rows": 0, "rows_failed": 0, "rules": {}}
        for s in states:
            if not s:
                continue
            out["rows"] += s["rows"]
            out["rows_failed"] += s["rows_failed"]
            for name, (ev, fa) in s["rules"].items():
                old = out["rules"].setdefault(name, [0, 0])
                old[0] += ev
                old[1] += fa
        return out

    def finalize(self, state: Any) -> dict[str, Any]:
        rules = self._validate()
        state = state or {"rows": 0, "rows_failed": 0, "rules": {}}
        rows = int(state["rows"])
        entries = [self._rule_report(r, rows, state["rules"].get(r.name, [0, 0])) for r in rules]
        ratios = [e["failure_ratio"] for e in entries if e["failure_ratio"] is not None]
        failed = [e["name"] for e in entries if not e["passed"]]
        report: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "rows": rows,
            "rows_failed": int(state["rows_failed"]),
            "score": 1.0 - math.fsum(ratios) / len(ratios) if ratios else None,
            "passed": not failed,
            "rules_passed": len(entries) - len(failed),
            "rules_failed": len(failed),
            "failed_rules": failed,
            "rules": entries,
        }
        if self.rules is None:
            report["assessment"] = quality_defaults.assessment(self, report)
        return report

    def _rule_report(self, rule: Rule, rows: int, counts: list[int]) -> dict[str, Any]:
        evaluated, failed = counts
        if rule.type == "row_count":
            lo, hi = rule.options.get("min"), rule.options.get("max")
            evaluated, failed = 1, int((lo is not None and rows < lo) or (hi is not None and rows > hi))
        ratio = failed / evaluated if evaluated else None
        entry: dict[str, Any] = {
            "name": rule.name,
            "type": rule.type,
            "columns": list(rule.columns),
            "severity": rule.severity,
            "threshold": rule.threshold,
            "evaluated": int(evaluated),
            "failed": int(failed),
            "failure_ratio": ratio,
            "passed": ratio is None or ratio <= rule.threshold,
        }
        if rule.type == "unique":
            merged = getattr(self, "unique_state_", {}).get(rule.name)
            entry["distinct_keys"] = int(merged["distinct"]) if merged else None
        if rule.type == "row_count":
            entry["rows"] = rows
        return entry


def _reason_patterns(failed: np.ndarray, names: list[str]) -> tuple[list[list[str]], np.ndarray]:
    """The distinct combinations of broken rules in the boolean matrix ``failed`` (rows x rules) as lists of
    rule names, and each row's combination (an index into them). Rows break few distinct combinations."""
    if len(names) < 63:  # a row's combination as one integer (bit j: rule j)
        codes = np.zeros(len(failed), dtype=np.int64)
        for j in range(len(names)):
            codes |= failed[:, j].astype(np.int64) << j
        first, inverse = np.unique(codes, return_index=True, return_inverse=True)[1:]
        patterns = failed[first]
    else:
        patterns, inverse = np.unique(failed, axis=0, return_inverse=True)
    lists = [[name for name, hit in zip(names, pattern.tolist(), strict=True) if hit] for pattern in patterns]
    return lists, np.asarray(inverse).reshape(-1)


def _reason_lists(failed: np.ndarray, names: list[str]) -> np.ndarray:
    """One list of broken rule names per row of the boolean matrix ``failed`` (rows x rules), as an object
    array (one list built per combination, not per row)."""
    patterns, inverse = _reason_patterns(failed, names)
    lists = np.empty(len(patterns), dtype=object)
    for i, pattern in enumerate(patterns):
        lists[i] = pattern
    return lists[inverse]


class _Chunk:
    """A chunk as an Arrow table, with pandas copies of single columns made only when a rule needs them (the
    chunk's own columns when it came as pandas)."""

    def __init__(self, chunk: Any) -> None:
        self.original = chunk
        self.kind = kind_of_frame(chunk)
        self.table = to_arrow(chunk)
        self._series: dict[str, pd.Series] = {}

    def series(self, name: str) -> pd.Series:
        if name not in self._series:
            if self.kind == "pandas":
                self._series[name] = self.original[_column(self.original, name, name)]
            else:
                self._series[name] = arrow_to_pandas_column(self.table.column(name))
        return self._series[name]

    def pandas(self, names: list[str]) -> pd.DataFrame:
        missing = [c for c in names if c not in self.table.column_names]
        if missing:  # the expression names the unknown columns itself
            return self.original if self.kind == "pandas" else self.table.to_pandas()
        return pd.DataFrame({name: self.series(name) for name in names}, index=self.series(names[0]).index)


def _arrow_column(table: Any, name: str, rule: str) -> str:
    if name in table.column_names:
        return name
    raise ConfigError(f"rule {rule!r}: unknown column {name!r}; columns: {list(table.column_names)}")


def _numeric_bound(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _without_float16(col: Any) -> Any:
    """A float16 column as float32, which holds every float16 value exactly (pyarrow < 17 has no NaN
    kernels for float16)."""
    import pyarrow as pa

    return col.cast(pa.float32()) if pa.types.is_float16(col.type) else col


def _arrow_check(rule: Rule, col: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``not_null`` and numeric ``between``/``min``/``max`` by Arrow kernels (nulls and NaN are null, as in
    pandas); None when the rule or the column type has no Arrow kernel here (the pandas check runs)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = _without_float16(col)
    missing = pc.is_null(col, nan_is_null=True)
    if rule.type == "not_null":
        return np.ones(len(col), dtype=bool), _flags(missing)
    if rule.type not in ("between", "min", "max"):
        return None
    t = col.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return None
    opts = rule.options
    lo, hi = opts.get("min"), opts.get("max")
    if rule.type == "min":
        lo, hi = opts["value"], None
    elif rule.type == "max":
        lo, hi = None, opts["value"]
    if not all(b is None or _numeric_bound(b) for b in (lo, hi)):
        return None
    inclusive = opts.get("inclusive", True)
    present = pc.invert(missing)
    ok = present
    try:
        if lo is not None:
            ok = pc.and_(ok, (pc.greater_equal if inclusive else pc.greater)(col, pa.scalar(lo)))
        if hi is not None:
            ok = pc.and_(ok, (pc.less_equal if inclusive else pc.less)(col, pa.scalar(hi)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
        return None
    valid = _flags(present)
    return valid, valid & ~_flags(ok)


def is_list_type(arrow_type: Any) -> bool:
    """A list, large list or fixed-size list (what a ``length`` rule measures)."""
    import pyarrow as pa

    t = pa.types
    return bool(t.is_list(arrow_type) or t.is_large_list(arrow_type) or t.is_fixed_size_list(arrow_type))


def _lengths(rule: Rule, col: Any) -> tuple[np.ndarray, np.ndarray]:
    """``length``: non-null lists are evaluated (a null list is not, as null values in the other value rules); a
    list fails when it has fewer than ``min`` or more than ``max`` elements (null elements count)."""
    import pyarrow.compute as pc

    lengths = pc.list_value_length(col)
    evaluated = _flags(pc.is_valid(lengths))
    n = pc.fill_null(lengths, 0).to_numpy(zero_copy_only=False)
    ok = np.ones(len(n), dtype=bool)
    lo, hi = rule.options.get("min"), rule.options.get("max")
    if lo is not None:
        ok &= n >= lo
    if hi is not None:
        ok &= n <= hi
    return evaluated, evaluated & ~ok


def _flags(mask: Any) -> np.ndarray:
    """A boolean Arrow array (or chunked array) as numpy, nulls as False."""
    import pyarrow.compute as pc

    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _column(chunk: pd.DataFrame, name: str, rule: str) -> Any:
    """The chunk's column called ``name`` (column labels are compared as strings)."""
    for c in chunk.columns:
        if str(c) == name:
            return c
    raise ConfigError(f"rule {rule!r}: unknown column {name!r}; columns: {[str(c) for c in chunk.columns]}")


# -- fail_on (evaluated by the operator after the job) ---------------------------------------------------------
def parse_fail_on(fail_on: Any) -> str | float | None:
    """``None``/``""``/``"never"``: never fail; ``"error"``/``"warning"``: a failed rule of at least that
    severity fails; a number in [0, 1] (or its text): fail when the overall score is below it."""
    if fail_on is None or (isinstance(fail_on, str) and fail_on.strip().lower() in ("", "never", "none")):
        return None
    if isinstance(fail_on, str) and fail_on.strip().lower() in SEVERITIES:
        return fail_on.strip().lower()
    try:
        value = float(fail_on)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(fail_on, bool) or not 0 <= value <= 1:
        raise ConfigError(
            f"fail_on: use 'error', 'warning', a minimum score in [0, 1], or None; got {fail_on!r}"
        )
    return value


def fail_on_message(report: Mapping[str, Any], fail_on: Any) -> str | None:
    """The summary message when ``report`` should fail the task under ``fail_on``, else None."""
    rule = parse_fail_on(fail_on)
    if rule is None or not report:
        return None
    entries = report.get("rules") or []
    if isinstance(rule, float):
        score = report.get("score")
        if score is None or score >= rule:
            return None
        head = f"data quality score {score:.4f} is below fail_on={rule:g}"
        bad = [e for e in entries if not e["passed"]]
    else:
        level = SEVERITIES.index(rule)
        bad = [e for e in entries if not e["passed"] and SEVERITIES.index(e["severity"]) >= level]
        if not bad:
            return None
        head = f"{len(bad)} data quality rule(s) of severity >= {rule} failed"
    details = "; ".join(
        f"{e['name']}: {e['failed']}/{e['evaluated']} failed"
        + (
            f" ({e['failure_ratio']:.2%} > threshold {e['threshold']:.2%})"
            if e["failure_ratio"] is not None
            else ""
        )
        for e in bad[:20]
    )
    more = f"; and {len(bad) - 20} more" if len(bad) > 20 else ""
    return (
        f"{head}: {details}{more}. {report.get('rows_failed', 0)} of {report.get('rows', 0)} rows quarantined"
    )

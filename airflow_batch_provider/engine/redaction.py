"""Error text without row values: the one rule used for failure records, task logs, exceptions, alerts and the
dashboard.

What stays: identifiers the job knows (column names, processor parameter names, rule names, option names,
file paths; :meth:`Scrubber.for_job` collects them), identifiers Python names in its own messages
(``unexpected keyword argument 'vat_rate'``, ``has no attribute 'x'``), exception types and other unquoted
wording, positions (``row 30001``, ``rows 0-5000``, ``bytes 10-20``, ``column #2``, ``f0:0-100``),
percentages and short integers. What goes: every other quoted literal (``'Alice'``, ``"12ab"``, ``b'\\x00'``),
long or decimal numbers, and the row pyarrow prints after ``Expected 3 columns, got 4:``; each is replaced by
its kind and length (``<text:5>``, ``<number:16>``, ``<bytes:8>``), so the message still says where and what
shape, never which value.

``[batch_provider] log_row_values = True`` (``AIRFLOW__BATCH_PROVIDER__LOG_ROW_VALUES``; off by default) keeps
the values in task logs and raised exceptions for debugging; failure records are scrubbed regardless. No
Airflow imports.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from airflow_batch_provider import settings

MAX_MESSAGE = 500
_TRUE = {"1", "true", "yes", "on", "t", "y"}

# A quoted literal (an optional b/r/u/f prefix, then '...', "..." or `...`), not glued to a word before it.
_QUOTED_RE = re.compile(
    r"""(?<![A-Za-z0-9_])(?P<prefix>[bBrRuUfF]{0,2})(?:'(?P<s>(?:[^'\\\n]|\\.)*)'|"(?P<d>(?:[^"\\\n]|\\.)*)"|`(?P<b>[^`\n]*)`)"""
)
# Long (5+ digits) or decimal numbers standing alone; percentages and the lengths in our placeholders stay.
_NUMBER_RE = re.compile(
    r"(?<![\w.])(?<!<text:)(?<!<number:)(?<!<bytes:)[-+]?(?:\d+\.\d+(?:[eE][-+]?\d+)?|\d{5,})(?![\w.%])"
)
_NUMERIC = re.compile(r"[-+]?(?:\d[\d_,]*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# pyarrow's CSV parser prints the whole offending row after this
_ROW_DUMP_RE = re.compile(r"(Expected \d+ columns?, got \d+: )(?!<text:\d+>)([^\n]*)")
# positions: where in the data, never what
_POSITION_RE = re.compile(
    r"(?i)\b(?:data\s+rows?|rows?|records?|bytes?|lines?|columns?|chunks?|attempts?|positions?|index|offset|"
    r"shards?|files?|generation|epoch|row\s+groups?)\s+#?\d+(?:\s*(?:-|to|/|\.\.)\s*\d+)?"
    r"|\bf\d+:\d+-\d+\b"
)
# Python names code identifiers in these phrases; what follows is a name, not data
_IDENTIFIER_CONTEXT_RE = re.compile(
    r"(?i)\b(?:keyword\s+argument|arguments?:?|attribute|name|module|column|parameter|option|field|rule|"
    r"processor|function)\s*$"
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_SPACE_RE = re.compile(r"\s+")
_TOKEN_RE = re.compile("\x00(\\d+)\x00")
# the lines of a formatted traceback that are code, not data
_TRACEBACK_CODE = re.compile(
    r"^\s*(?:Traceback \(most recent call last\):|File \".*\", line \d+.*|[\^~ ]+|"
    r"The above exception was the direct cause of the following exception:|"
    r"During handling of the above exception, another exception occurred:|\"\"\")\s*$"
)

_override: bool | None = None


def row_values_logged() -> bool:
    """Whether task logs and raised exceptions may show row values (``[batch_provider] log_row_values``)."""
    if _override is not None:
        return _override
    return settings.engine_setting("log_row_values").strip().lower() in _TRUE


def configure_row_values(enabled: bool | None) -> None:
    """Log row values or not in this process from now on (``None``: back to the environment's setting). The
    operators call it with ``[batch_provider] log_row_values`` from Airflow's configuration."""
    global _override
    _override = None if enabled is None else bool(enabled)


@contextlib.contextmanager
def log_row_values(enabled: bool | None) -> Iterator[None]:
    """Within the block, log row values or not, whatever the environment says (the operators set it from
    Airflow's configuration; forked chunk workers inherit it). ``None`` leaves the setting alone."""
    global _override
    previous, _override = _override, (_override if enabled is None else bool(enabled))
    try:
        yield
    finally:
        _override = previous


def _kind(prefix: str, content: str) -> str:
    if "b" in prefix.lower():
        return "bytes"
    return "number" if _NUMERIC.fullmatch(content.strip()) else "text"


def placeholder(value: Any, kind: str | None = None) -> str:
    """``<kind:length>`` for one value (``<text:16>``, ``<number:4>``)."""
    text = value if isinstance(value, str) else str(value)
    return f"<{kind or _kind('', text)}:{len(text)}>"


class _Tokens:
    """Spans taken out of the text while the rules run, put back at the end (they are never rescanned)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def put(self, text: str) -> str:
        self.parts.append(text)
        return f"\x00{len(self.parts) - 1}\x00"

    def restore(self, text: str) -> str:
        while "\x00" in text:
            text = _TOKEN_RE.sub(lambda m: self.parts[int(m.group(1))], text)
        return text


def _scrub_line(text: str, known: frozenset[str], protect: re.Pattern[str] | None) -> str:
    text = text.replace("\x00", "\\x00")  # NUL marks the tokens below
    tokens = _Tokens()
    text = _ROW_DUMP_RE.sub(lambda m: m.group(1) + tokens.put(placeholder(m.group(2), "text")), text)

    def quoted(m: re.Match[str]) -> str:
        content = next(g for g in (m.group("s"), m.group("d"), m.group("b")) if g is not None)
        before = text[max(0, m.start() - 40) : m.start()]
        if content in known or (
            _IDENTIFIER.fullmatch(content) and _IDENTIFIER_CONTEXT_RE.search(before.replace("\x00", " "))
        ):
            return tokens.put(m.group(0))
        return tokens.put(placeholder(content, _kind(m.group("prefix"), content)))

    text = _QUOTED_RE.sub(quoted, text)
    if protect is not None:
        text = protect.sub(lambda m: tokens.put(m.group(0)), text)
    text = _POSITION_RE.sub(lambda m: tokens.put(m.group(0)), text)
    text = _NUMBER_RE.sub(lambda m: tokens.put(placeholder(m.group(0), "number")), text)
    return tokens.restore(text)


def _protect_pattern(known: frozenset[str]) -> re.Pattern[str] | None:
    """Known identifiers that the number rule would otherwise cut into (paths, names with digits)."""
    risky = sorted((k for k in known if len(k) > 1 and re.search(r"\d", k)), key=len, reverse=True)
    if not risky:
        return None
    return re.compile(r"(?<![\w])(?:" + "|".join(re.escape(k) for k in risky[:500]) + r")(?![\w])")


def scrub_message(text: Any, known: Iterable[str] = (), *, limit: int | None = MAX_MESSAGE) -> str:
    """``text`` without row values, on one line, cut at ``limit`` characters (``None``: not cut).

    ``known``: identifiers to keep even when quoted (column, parameter and rule names, file paths).
    Always scrubs: failure records use it whatever ``log_row_values`` says.
    """
    if text is None:
        return ""
    known = known if isinstance(known, frozenset) else frozenset(str(k) for k in known)
    clean = _scrub_line(str(text), known, _protect_pattern(known))
    clean = _SPACE_RE.sub(" ", clean).strip()
    if limit is not None and len(clean) > limit:
        clean = clean[: limit - 3] + "..."
    return clean


def scrub_traceback(text: str, known: Iterable[str] = ()) -> str:
    """A formatted traceback with its exception messages scrubbed; file/line references and source lines (the
    code, not the data) stay."""
    known = frozenset(str(k) for k in known)
    protect = _protect_pattern(known)
    out, code_next = [], False
    for line in text.splitlines():
        if code_next:
            out.append(line)
            code_next = False
        elif _TRACEBACK_CODE.match(line) or not line.strip():
            out.append(line)
            code_next = line.lstrip().startswith("File ")
        else:
            out.append(_scrub_line(line, known, protect))
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


class _Verbatim(str):
    """A ``KeyError`` argument that prints as itself (``KeyError`` prints the repr of its argument)."""

    def __repr__(self) -> str:
        return str(self)


def _chain(err: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and len(out) < 10 and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


@dataclass(frozen=True)
class Scrubber:
    """The scrubbing rule with the identifiers of one job."""

    known: frozenset[str] = frozenset()

    def record(self, text: Any, limit: int | None = MAX_MESSAGE) -> str:
        """For failure records: always scrubbed."""
        return scrub_message(text, self.known, limit=limit)

    def exception(self, err: BaseException) -> BaseException:
        """Scrub ``err`` and its causes in place (messages, a worker's formatted traceback), unless
        ``log_row_values`` is on; returns ``err``. Attributes (``errno``, ``failure_class`` ...) are kept, so
        classification is unchanged; exceptions whose text is not their message (``OSError``) are left alone, and
        so is a :class:`~airflow_batch_provider.exceptions.ConfigError`: our own message about the job's
        configuration (DAG code: parameter names, rule options), never about row values (its causes are still
        scrubbed). Failure records are scrubbed whatever the class (:meth:`record`)."""
        from airflow_batch_provider.exceptions import ConfigError

        if row_values_logged():
            return err
        for e in _chain(err):
            if isinstance(e, ConfigError):
                continue
            tb = getattr(e, "tb", None)
            if type(e).__name__ == "_RemoteTraceback" and isinstance(tb, str):
                e.tb = scrub_traceback(tb, self.known)  # type: ignore[attr-defined]
                continue
            if len(e.args) != 1 or not isinstance(e.args[0], str) or isinstance(e, OSError):
                continue
            raw = e.args[0]
            if isinstance(e, KeyError):
                clean = scrub_message(repr(raw), self.known, limit=None)
                if clean != repr(raw):
                    e.args = (_Verbatim(clean),)
            elif str(e) == raw:
                clean = scrub_message(raw, self.known, limit=None)
                if clean != _SPACE_RE.sub(" ", raw).strip():
                    e.args = (clean,)
        return err

    @classmethod
    def for_job(
        cls,
        *,
        schema: Any = None,
        processor: Any = None,
        paths: Iterable[Any] = (),
        options: Any = None,
    ) -> Scrubber:
        """The identifiers a job knows: column names, the processor's name and parameters (names, and the names
        and columns inside rule lists), option and config field names, file paths and URIs."""
        known: set[str] = set()
        known.update(str(n) for n in getattr(schema, "names", None) or ())
        if processor is not None:
            for attr in ("name", "label"):
                value = getattr(processor, attr, None)
                if isinstance(value, str):
                    known.add(value)
            params = getattr(processor, "params", None)
            if not isinstance(params, Mapping):
                get = getattr(processor, "get_params", None)
                params = get() if callable(get) else {}
            _collect(params, known, 0)
        for p in paths:
            text = str(getattr(p, "uri", p))
            known.add(text)
            known.add(str(getattr(p, "path", text)))
        known.update(_option_names())
        if options is not None:
            known.update(
                str(getattr(options, k)) for k in ("delimiter", "quote_char") if getattr(options, k, None)
            )
        known.discard("")
        return cls(frozenset(known))


_IDENTIFYING_KEYS = {"name", "column", "columns", "type", "rule", "processor", "algorithm", "dtype"}


def _collect(value: Any, known: set[str], depth: int) -> None:
    """Parameter names at any depth, and the strings under identifying keys (rule names, columns)."""
    if depth > 6:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            known.add(str(key))
            if str(key) in _IDENTIFYING_KEYS:
                for v in item if isinstance(item, (list, tuple)) else [item]:
                    if isinstance(v, str):
                        known.add(v)
            elif str(key) == "expression" and isinstance(item, str):
                known.update(_subexpressions(item))
            _collect(item, known, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value[:1000]:
            _collect(item, known, depth + 1)


def _subexpressions(text: str) -> set[str]:
    """A rule expression (DAG code) and every part of it as error messages print it (``ast.unparse``)."""
    import ast

    if len(text) > 4000:
        return set()
    try:
        tree = ast.parse(text.strip(), mode="eval")
        return {text, *(ast.unparse(n) for n in ast.walk(tree.body) if isinstance(n, ast.expr))}
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return {text}


def _option_names() -> set[str]:
    """Names of our own settings (config and recovery fields, CSV options, candidate delimiters): messages
    that tell the fix quote them."""
    from airflow_batch_provider.config import BatchConfig
    from airflow_batch_provider.engine.failures import RecoveryConfig
    from airflow_batch_provider.engine.textformats import TextOptions

    names = {"csv_options", "recovery", "config", ",", ";", "\t", "|", '"'}
    for cls in (BatchConfig, RecoveryConfig, TextOptions):
        if is_dataclass(cls):
            names.update(f.name for f in fields(cls))
    return names

"""``BatchConfig``: how a batch job is chunked, run, retried and checkpointed.

No Airflow imports: the engine uses this module directly. Values that arrive as strings
(from a rendered template, ``dag_run.conf`` or the CLI) are coerced, and every invalid value or
unknown key fails with a :class:`~airflow_batch_provider.exceptions.ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from airflow_batch_provider.exceptions import ConfigError


class BatchPriority(enum.IntEnum):
    """Job priority. Operators map it onto ``priority_weight`` with ``weight_rule="absolute"``."""

    LOW = 1
    MEDIUM = 10
    HIGH = 100
    CRITICAL = 1000

    @classmethod
    def parse(cls, value: BatchPriority | str | int) -> BatchPriority:
        if isinstance(value, BatchPriority):
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        names = ", ".join(p.name for p in cls)
        raise ConfigError(f"priority: {value!r} is not a BatchPriority; use one of {names}")


def _cpu_count() -> int:
    from airflow_batch_provider.machine import usable_cpus

    return usable_cpus()


# field name -> (type, minimum, allow None)
_RULES: dict[str, tuple[type, float, bool]] = {
    "batch_size": (int, 1, True),
    "max_concurrent_batches": (int, 1, True),
    "memory_limit_mb": (int, 16, True),
    "timeout_seconds": (float, 0.001, True),
    "batch_timeout_seconds": (float, 0.001, True),
    "retry_attempts": (int, 0, False),
    "retry_delay_seconds": (float, 0, False),
    "checkpoint_interval": (int, 1, False),
    "enable_progress_tracking": (bool, 0, False),
    "preserve_order": (bool, 0, False),
    "auto_optimize": (bool, 0, False),
    "progress_interval_seconds": (float, 0, False),
    "compact_output": (bool, 0, True),
    "target_file_size_mb": (int, 1, False),
}

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _coerce_bool(name: str, value: Any, nullable: bool) -> bool | None:
    """A bool from a bool or its spelling; a nullable one (``compact_output``) also takes ``"auto"``: None."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _TRUE | _FALSE:
        return text in _TRUE
    if nullable and text == "auto":
        return None
    allowed = "true, false or None (auto)" if nullable else "true or false"
    raise ConfigError(f"BatchConfig.{name} must be {allowed}, got {value!r}")


def _coerce(name: str, value: Any) -> Any:
    kind, minimum, nullable = _RULES[name]
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"}):
        if nullable:
            return None
        raise ConfigError(f"BatchConfig.{name} must not be None")
    if kind is bool:
        return _coerce_bool(name, value, nullable)
    if isinstance(value, bool):
        raise ConfigError(f"BatchConfig.{name} must be a number, got {value!r}")
    try:
        number = kind(value.strip() if isinstance(value, str) else value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(f"BatchConfig.{name} must be {kind.__name__}, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"BatchConfig.{name} must be >= {minimum:g}, got {value!r}")
    return number


@dataclasses.dataclass(frozen=True)
class BatchConfig:
    """How a job is chunked and run.

    :param batch_size: rows per chunk. ``None`` lets ``auto_optimize`` size chunks from a data sample
        (or use the provider's ``default_batch_size``).
    :param max_concurrent_batches: chunks in flight at once (worker processes). ``None``: one per CPU.
    :param memory_limit_mb: memory budget of the job; auto-sizing keeps chunks well under it.
    :param timeout_seconds: wall-clock limit of the whole job; the job checkpoints, then fails.
    :param batch_timeout_seconds: wall-clock limit of one chunk; the chunk's worker is killed and the
        chunk retried.
    :param retry_attempts: in-task retries of one failing chunk before the job checkpoints and fails.
    :param retry_delay_seconds: first delay between chunk retries; doubles on each retry.
    :param checkpoint_interval: chunks completed between two checkpoints.
    :param enable_progress_tracking: emit progress events to the log and callbacks.
    :param preserve_order: commit chunk outputs in source order (part names always sort in source order;
        this also makes the in-flight window release results in order).
    :param auto_optimize: choose ``batch_size`` from a data sample when it is not set.
    :param progress_interval_seconds: at most one progress event per this many seconds.
    :param compact_output: merge the job's part files (one per chunk) at commit into files of about
        ``target_file_size_mb``, in the same order and still atomically; the committed manifest lists the merged
        files. ``None`` (or ``"auto"``): on when the parts average under 1/16 of the target size.
    :param target_file_size_mb: the size a compacted output file grows to (a larger part stays one file).
    """

    batch_size: int | None = None
    max_concurrent_batches: int | None = None
    memory_limit_mb: int | None = 2048
    timeout_seconds: float | None = None
    batch_timeout_seconds: float | None = None
    retry_attempts: int = 3
    retry_delay_seconds: float = 1.0
    checkpoint_interval: int = 10
    enable_progress_tracking: bool = True
    preserve_order: bool = True
    auto_optimize: bool = True
    progress_interval_seconds: float = 5.0
    compact_output: bool | None = None
    target_file_size_mb: int = 128

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, _coerce(field.name, getattr(self, field.name)))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> BatchConfig:
        return cls().with_overrides(values)

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> BatchConfig:
        """A copy with ``overrides`` applied; an unknown key fails naming it and the valid ones."""
        if not overrides:
            return self
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"config_overrides must be a mapping of BatchConfig fields, got {overrides!r}")
        unknown = sorted(set(overrides) - set(self.field_names()))
        if unknown:
            raise ConfigError(
                f"unknown BatchConfig field(s) {', '.join(map(repr, unknown))}; "
                f"valid fields: {', '.join(self.field_names())}"
            )
        return dataclasses.replace(self, **dict(overrides))

    @property
    def concurrency(self) -> int:
        """``max_concurrent_batches`` with ``None`` resolved to the CPUs this process may use."""
        return self.max_concurrent_batches or _cpu_count()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

"""Failure classes, the classifier, and ``RecoveryConfig``: what the engine does about each kind of failure.

Every failure of a chunk (or of the job) is put in one of six classes, and each class has a strategy:

=================  ======================  ===================================================================
class              default strategy        what happens inside the task
=================  ======================  ===================================================================
processing         ``retry``               retry the chunk with exponential backoff, up to the retry limit
network            ``retry_jitter``        retry with exponential backoff plus random jitter
memory             ``split``               split the chunk in two, cap the batch size for the rest of the job
                                           (and the next try), continue
timeout            ``retry``               the chunk's worker is killed after ``batch_timeout_seconds``; retry
data_corruption    ``quarantine``          list the chunk's source rows (and byte range) with the reason,
                                           skip them, fail when more than ``max_skipped_fraction`` is skipped
system             ``checkpoint_and_fail`` checkpoint and fail the try; Airflow's retry resumes from there
=================  ======================  ===================================================================

No Airflow imports. The operators' retry policy reads the same classes between tries.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import dataclasses
import enum
import errno
import random
import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow_batch_provider.exceptions import BatchInputError, ConfigError
from airflow_batch_provider.storage import NETWORK_ERRNOS, exception_chain


class FailureClass(str, enum.Enum):
    PROCESSING = "processing"
    MEMORY = "memory"
    TIMEOUT = "timeout"
    NETWORK = "network"
    DATA_CORRUPTION = "data_corruption"
    SYSTEM = "system"
    #: a :class:`~airflow_batch_provider.exceptions.ConfigError`: the job's own configuration is wrong (a rule,
    #: an option, a parameter); nothing about the data, so it is never quarantined and never retried
    CONFIGURATION = "configuration"

    @classmethod
    def parse(cls, value: Any) -> FailureClass:
        try:
            return value if isinstance(value, cls) else cls(str(value).strip().lower())
        except ValueError:
            raise ConfigError(
                f"unknown failure class {value!r}; use one of {', '.join(c.value for c in cls)}"
            ) from None


class Strategy(str, enum.Enum):
    RETRY = "retry"  # exponential backoff
    RETRY_JITTER = "retry_jitter"  # exponential backoff with random jitter
    SPLIT = "split"  # split the chunk, smaller batches from now on
    QUARANTINE = "quarantine"  # list the rows with the reason, skip them (bounded by max_skipped_fraction)
    FAIL = "fail"  # fail the job now
    CHECKPOINT_AND_FAIL = "checkpoint_and_fail"  # checkpoint and fail the try; the next try resumes

    @classmethod
    def parse(cls, value: Any) -> Strategy:
        try:
            return value if isinstance(value, cls) else cls(str(value).strip().lower())
        except ValueError:
            raise ConfigError(
                f"unknown strategy {value!r}; use one of {', '.join(s.value for s in cls)}"
            ) from None


DEFAULT_STRATEGIES: dict[FailureClass, Strategy] = {
    FailureClass.PROCESSING: Strategy.RETRY,
    FailureClass.NETWORK: Strategy.RETRY_JITTER,
    FailureClass.MEMORY: Strategy.SPLIT,
    FailureClass.TIMEOUT: Strategy.RETRY,
    FailureClass.DATA_CORRUPTION: Strategy.QUARANTINE,
    FailureClass.SYSTEM: Strategy.CHECKPOINT_AND_FAIL,
    FailureClass.CONFIGURATION: Strategy.FAIL,
}

_SYSTEM_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EMFILE,
    errno.ENFILE,
}
# transport errors of the HTTP stacks object storage uses, by class name so none of them must be installed
_NETWORK_NAMES = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "ProtocolError",
    "ClientConnectorError",
    "ClientOSError",
    "ServerDisconnectedError",
    "ServerTimeoutError",
    "ClientPayloadError",
    "IncompleteRead",
    "RemoteDisconnected",
    "NewConnectionError",
    "MaxRetryError",
    "SlowDown",
    "ThrottlingException",
}

Match = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


#: exception types and their class, in order (a ``ConfigError`` before ``BatchInputError``: a bad setting is
#: not bad data); ``OSError`` is decided by its errno (:func:`_os_error_class`)
_TYPE_CLASSES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], FailureClass], ...] = (
    (MemoryError, FailureClass.MEMORY),
    (ConfigError, FailureClass.CONFIGURATION),
    (BatchInputError, FailureClass.DATA_CORRUPTION),  # bad input: retrying cannot fix it
    (ConnectionError, FailureClass.NETWORK),
    # a socket timeout; the engine's own timeouts declare their class
    ((TimeoutError, concurrent.futures.TimeoutError), FailureClass.NETWORK),
    (concurrent.futures.process.BrokenProcessPool, FailureClass.SYSTEM),
)


def _os_error_class(err: OSError) -> FailureClass | None:
    if err.errno == errno.ENAMETOOLONG:  # a name too long for the filesystem: bad input
        return FailureClass.DATA_CORRUPTION
    if err.errno in NETWORK_ERRNOS:
        return FailureClass.NETWORK
    return FailureClass.SYSTEM if err.errno in _SYSTEM_ERRNOS else None


def _one_class(err: BaseException) -> FailureClass | None:
    declared = getattr(err, "failure_class", None)
    if declared:
        return FailureClass.parse(declared)
    if type(err).__name__ in _NETWORK_NAMES:
        return FailureClass.NETWORK
    for kind, cls in _TYPE_CLASSES:
        if isinstance(err, kind):
            return cls
    return _os_error_class(err) if isinstance(err, OSError) else None


def _builtin_class(exc: BaseException) -> FailureClass:
    for err in exception_chain(exc):
        found = _one_class(err)
        if found is not None:
            return found
    return FailureClass.PROCESSING


@dataclasses.dataclass(frozen=True)
class FailureClassifier:
    """Maps an exception to a :class:`FailureClass`: the user's rules first, in order, then the built-in ones.

    A rule is ``(match, failure_class)`` where ``match`` is an exception type, a tuple of types, or a
    predicate ``fn(exc) -> bool``. The built-in rules honour a ``failure_class`` attribute on the exception or
    any exception in its ``__cause__`` chain, then: ``MemoryError`` -> memory, ``ConfigError`` -> configuration,
    our other input errors -> data corruption, connection errors / socket timeouts / HTTP transport errors -> network, disk full and
    permission errors -> system, anything else -> processing.
    """

    rules: tuple[tuple[Match, FailureClass], ...] = ()

    @classmethod
    def with_rules(cls, rules: Sequence[tuple[Match, Any]] | None) -> FailureClassifier:
        parsed = []
        for rule in rules or ():
            if not isinstance(rule, (tuple, list)) or len(rule) != 2:
                raise ConfigError(
                    f"a classification rule is (exception type or predicate, class), got {rule!r}"
                )
            match, kind = rule
            if not (isinstance(match, (type, tuple)) or callable(match)):
                raise ConfigError(
                    f"a classification rule must match an exception type or a predicate: {match!r}"
                )
            parsed.append((match, FailureClass.parse(kind)))
        return cls(tuple(parsed))

    def classify(self, exc: BaseException) -> FailureClass:
        for match, kind in self.rules:
            if isinstance(match, (type, tuple)):
                if isinstance(exc, match):
                    return kind
            elif match(exc):
                return kind
        return _builtin_class(exc)


def classify(exc: BaseException) -> FailureClass:
    """The built-in classification of ``exc`` (no user rules)."""
    return _builtin_class(exc)


@dataclasses.dataclass(frozen=True)
class RecoveryConfig:
    """How the engine recovers from failures inside one task try.

    Two settings are shared with :class:`~airflow_batch_provider.config.BatchConfig` under other names:
    ``max_retry_attempts`` is ``retry_attempts`` and ``checkpoint_interval_batches`` is
    ``checkpoint_interval``. Set either name; setting both to different values is an error (a BatchConfig
    value equal to its default counts as not set).

    :param max_retry_attempts: in-task retries of one chunk (processing, network, timeout).
    :param enable_checkpointing: ``False`` turns resume off: every run starts a new generation from the first
        row, and no checkpoint is written before the end.
    :param checkpoint_interval_batches: chunks between two checkpoints.
    :param preserve_partial_results: keep finished chunks when the job fails so the next try resumes; with
        ``False`` a failed job deletes its unfinished generation.
    :param max_skipped_fraction: the share of the source's rows that corrupt data may make the job skip
        (quarantine). ``0`` (default): nothing is skipped, the first corrupt chunk fails the job.
    :param backoff_base_seconds: first retry delay (default: ``BatchConfig.retry_delay_seconds``).
    :param backoff_multiplier: delay growth per attempt.
    :param backoff_max_seconds: delay cap.
    :param jitter: share of the delay that is random for ``retry_jitter`` (0-1): delay is
        ``d * (1 - jitter) + uniform(0, d * jitter)``.
    :param memory_watchdog: kill a chunk worker whose own memory grows past its share of
        ``BatchConfig.memory_limit_mb`` (the chunk is then split as a memory failure).
    :param strategies: per-class strategy overrides, e.g. ``{"processing": "checkpoint_and_fail"}``.
    :param rules: extra classification rules, ``[(ExceptionType or predicate, "network"), ...]``.
    """

    max_retry_attempts: int | None = None
    enable_checkpointing: bool = True
    checkpoint_interval_batches: int | None = None
    preserve_partial_results: bool = True
    max_skipped_fraction: float = 0.0
    backoff_base_seconds: float | None = None
    backoff_multiplier: float = 2.0
    backoff_max_seconds: float = 300.0
    jitter: float = 0.5
    memory_watchdog: bool = True
    strategies: Mapping[Any, Any] = dataclasses.field(default_factory=dict)
    rules: Sequence[tuple[Match, Any]] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.max_skipped_fraction) <= 1.0:
            raise ConfigError(
                f"RecoveryConfig.max_skipped_fraction must be within 0-1, got {self.max_skipped_fraction!r}"
            )
        if not 0.0 <= float(self.jitter) <= 1.0:
            raise ConfigError(f"RecoveryConfig.jitter must be within 0-1, got {self.jitter!r}")
        if self.backoff_multiplier < 1 or self.backoff_max_seconds < 0:
            raise ConfigError("RecoveryConfig.backoff_multiplier must be >= 1 and backoff_max_seconds >= 0")
        for name in ("max_retry_attempts", "checkpoint_interval_batches"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or int(value) < (1 if "interval" in name else 0)
            ):
                raise ConfigError(f"RecoveryConfig.{name} is out of range: {value!r}")
        strategies = {FailureClass.parse(k): Strategy.parse(v) for k, v in dict(self.strategies).items()}
        object.__setattr__(self, "strategies", strategies)
        object.__setattr__(self, "classifier", FailureClassifier.with_rules(self.rules))

    @classmethod
    def from_value(cls, value: RecoveryConfig | Mapping[str, Any] | None) -> RecoveryConfig:
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"recovery must be a RecoveryConfig or a mapping, got {type(value).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfigError(f"unknown RecoveryConfig field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**dict(value))

    def strategy(self, kind: FailureClass) -> Strategy:
        return self.strategies.get(kind, DEFAULT_STRATEGIES[kind])

    def classify(self, exc: BaseException) -> FailureClass:
        return self.classifier.classify(exc)  # type: ignore[attr-defined]

    def delay(self, attempt: int, base: float, *, jitter: bool, rng: random.Random | None = None) -> float:
        """The wait before retry number ``attempt`` (1 = first retry)."""
        first = base if self.backoff_base_seconds is None else self.backoff_base_seconds
        d = min(self.backoff_max_seconds, first * self.backoff_multiplier ** max(0, attempt - 1))
        if jitter and d > 0:
            d = d * (1 - self.jitter) + (rng or random).uniform(0, d * self.jitter)
        return d

    def merge_into(self, config: Any) -> Any:
        """``config`` (a BatchConfig) with the shared settings applied; conflicting values are an error."""
        defaults = type(config)()
        changes: dict[str, Any] = {}
        for ours, theirs in (
            ("max_retry_attempts", "retry_attempts"),
            ("checkpoint_interval_batches", "checkpoint_interval"),
        ):
            value = getattr(self, ours)
            if value is None:
                continue
            current = getattr(config, theirs)
            if current != getattr(defaults, theirs) and current != value:
                raise ConfigError(
                    f"RecoveryConfig.{ours}={value!r} conflicts with BatchConfig.{theirs}={current!r}: they are "
                    "one setting; set it in one place"
                )
            changes[theirs] = value
        return config.with_overrides(changes) if changes else config


# -- deterministic processor errors: fail fast ------------------------------------------------------------
#: raised by the processor's own code, these are bugs: every chunk fails the same way, so no retry can help.
#: NotImplementedError covers pyarrow's "no kernel matching input types": the column's type, not the moment
DETERMINISTIC_TYPES: tuple[type[BaseException], ...] = (
    TypeError,
    NotImplementedError,
    NameError,
    AttributeError,
    ImportError,
    SyntaxError,
)
FAIL_FAST_CHUNKS = 3
#: where a frame's code lives when it is the engine's or a storage/transport library's, not the processor's
_NOT_PROCESSOR_CODE = (
    "/airflow_batch_provider/engine/",
    "/airflow_batch_provider/storage.py",
    "/fsspec/",
    "/s3fs/",
    "/gcsfs/",
    "/adlfs/",
    "/botocore/",
    "/aiobotocore/",
    "/boto3/",
    "/aiohttp/",
    "/urllib3/",
    "/requests/",
    "/httpx/",
    "/pyarrow/fs.py",
    "/socket.py",
    "/ssl.py",
    "/http/client.py",
)
PROCESSOR_FRAMES = "processor_frames"  # attribute a chunk worker sets on what the processor raised
_PLACEHOLDER = re.compile(r"<(\w+):\d+>")  # a scrubbed value's kind and length: the length is data too
_NUMBER = re.compile(r"<number>|[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def mark_processor_frames(err: BaseException) -> None:
    """Record on ``err`` the files of its traceback frames below the current one (the processor's call). The
    attribute survives pickling, so the parent can tell where a worker's exception came from."""
    files = [frame.f_code.co_filename.replace("\\", "/") for frame, _ in traceback.walk_tb(err.__traceback__)]
    try:
        setattr(err, PROCESSOR_FRAMES, tuple(files[1:]))
    except (AttributeError, TypeError):  # an exception type without a __dict__
        pass


def from_processor_code(err: BaseException) -> bool:
    """True when ``err`` was raised inside the processor's call and no frame on the way was the engine's or a
    storage/transport library's (then it is the processor's own bug, not the platform's)."""
    frames = getattr(err, PROCESSOR_FRAMES, None)
    if not frames:
        return False
    return not any(part in frame for frame in frames for part in _NOT_PROCESSOR_CODE)


def error_signature(err: BaseException) -> str:
    """The exception type and its message without data values (``scrub_message``, then every number, position
    and length), so the same bug hit on different rows has one signature."""
    from airflow_batch_provider.engine.records import scrub_message

    text = _PLACEHOLDER.sub(r"<\1>", scrub_message(str(err)))
    return f"{type(err).__name__}: {_NUMBER.sub('#', text)}"


@dataclasses.dataclass
class FailFast:
    """Decides that a processor fails deterministically, so the job stops after one attempt of the chunk.

    Only failures classified ``processing`` count (network, memory, timeout ... keep their strategies):

    - a :data:`DETERMINISTIC_TYPES` exception raised from the processor's own code, at once;
    - the first ``min(FAIL_FAST_CHUNKS, chunks)`` distinct chunks to fail all with one
      :func:`error_signature`, while no chunk has succeeded (in this run or an earlier one).

    While that is undecided (:attr:`probing`) the engine runs new chunks before retrying failed ones.
    """

    chunks: int
    succeeded: bool = False
    window: int = FAIL_FAST_CHUNKS
    signatures: dict[tuple[int, int], str] = dataclasses.field(default_factory=dict)
    decided: bool = False

    def __post_init__(self) -> None:
        self.decided = self.decided or self.succeeded

    def success(self) -> None:
        self.succeeded = self.decided = True

    @property
    def probing(self) -> bool:
        return bool(self.signatures) and not self.decided

    def verdict(self, key: tuple[int, int], err: BaseException, kind: FailureClass) -> str | None:
        """Why the failure of chunk ``key`` is deterministic, or None."""
        if kind is not FailureClass.PROCESSING or isinstance(err, BatchInputError):
            return None
        if isinstance(err, DETERMINISTIC_TYPES) and from_processor_code(err):
            return f"{type(err).__name__} from the processor's own code is a bug, the same on every chunk"
        if self.decided:
            return None
        self.signatures.setdefault(key, error_signature(err))
        if len(set(self.signatures.values())) > 1:
            self.decided = True
            return None
        needed = max(1, min(self.window, self.chunks))
        if len(self.signatures) < needed:
            return None
        self.decided = True
        return f"the first {needed} chunk(s) all failed with this error and none succeeded"

"""The provider's exception types, in one place.

The engine and the processors import nothing from Airflow, so these are plain exceptions.
The operators translate the permanent ones (:class:`BatchInputError` and its subclasses)
into ``AirflowFailException`` so that Airflow does not retry what retrying cannot fix.
"""

from __future__ import annotations


class BatchProviderError(Exception):
    """Base class of every error raised by airflow-batch-provider."""


class BatchInputError(BatchProviderError):
    """Bad input that retrying cannot fix: a bad source, config or processor name."""


class ConfigError(BatchInputError, ValueError):
    """An invalid ``BatchConfig`` value or an unknown override key."""


class SourceError(BatchInputError):
    """The source is missing, matches no file, or has an unsupported format."""


class SchemaMismatchError(SourceError):
    """Files in one source do not share one schema."""


class DataCorruptionError(BatchInputError):
    """A file or a row range cannot be decoded (truncated file, malformed row, bad bytes)."""


class CorruptRowsError(DataCorruptionError):
    """Records of a text file that cannot be read, found one by one inside a chunk.

    ``rows``: one mapping per bad record in row order, ``{"row", "byte_range": [begin, end], "reason"}`` (row
    0-based among the file's data rows); ``complete`` False: the search stopped after more records than the job
    may skip. The engine quarantines exactly these rows and reads the rest of the chunk.
    """

    def __init__(
        self, message: str, *, path: str = "", rows: list[dict] | None = None, complete: bool = True
    ) -> None:
        super().__init__(message)
        self.path = path
        self.rows = list(rows or [])
        self.complete = complete


class ProcessorNotFoundError(BatchInputError, LookupError):
    """A processor name that is not registered."""


class ProcessorParameterError(BatchInputError, TypeError):
    """Keyword arguments a processor does not accept (or required ones missing), found before any chunk ran."""


class DeterministicProcessorError(BatchInputError):
    """The processor fails the same way on every chunk (a bug in its code, not in the data or the platform).

    Raised after the chunk's single attempt, once the job has checkpointed: neither the engine nor Airflow
    retries it. ``chunk`` is the failing chunk's label, ``processor`` the processor's name, ``error_type`` the
    original exception's class name.
    """

    failure_class = "processing"

    def __init__(
        self, message: str, *, chunk: str | None = None, processor: str = "", error_type: str = ""
    ) -> None:
        super().__init__(message)
        self.chunk = chunk
        self.processor = processor
        self.error_type = error_type


class ChunkFailedError(BatchProviderError):
    """A chunk still failed after its in-task retries; the job checkpointed and stopped.

    Transient by default: an Airflow retry resumes from the checkpoint. ``failure_class`` is the class of
    the last failure (``processing``, ``network``, ...), which the provider's retry policy reads.
    """

    def __init__(
        self, message: str, *, chunk: str | None = None, attempts: int = 0, failure_class: str = "processing"
    ) -> None:
        super().__init__(message)
        self.chunk = chunk
        self.attempts = attempts
        self.failure_class = failure_class


class ChunkTimeoutError(BatchProviderError, TimeoutError):
    """A chunk ran longer than ``batch_timeout_seconds``; its worker was killed."""

    failure_class = "timeout"


class WorkerDiedError(BatchProviderError):
    """A chunk worker process died while running a chunk (killed by the kernel or the memory watchdog)."""

    def __init__(self, message: str, *, failure_class: str = "system") -> None:
        super().__init__(message)
        self.failure_class = failure_class


class StaleAttemptError(BatchProviderError):
    """A newer attempt (a later task try) owns the job folder; this one stopped without writing."""

    failure_class = "system"


class JobTimeoutError(BatchProviderError, TimeoutError):
    """The whole job ran past ``timeout_seconds``; it checkpointed first."""

    failure_class = "timeout"


class JobCancelledError(BatchProviderError):
    """The job was asked to stop (SIGTERM, ``on_kill``); it checkpointed first."""

    failure_class = "system"


class StorageNetworkError(BatchProviderError, ConnectionError):
    """Object storage stayed unreachable (connection reset/refused, timeouts, throttling, HTTP 5xx) after the
    storage layer's own retries with backoff. Transient: an Airflow retry resumes from the checkpoint."""

    failure_class = "network"

    def __init__(self, message: str, *, op: str = "", target: str = "", attempts: int = 0) -> None:
        super().__init__(message)
        self.op = op
        self.target = target
        self.attempts = attempts


class ShardIncompleteError(BatchProviderError):
    """A sharded job cannot merge (or a shard cannot start): a shard or the shard plan is missing or unfinished."""

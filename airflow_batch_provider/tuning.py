"""User-facing tuning advice: batch-size recommendations (the ``airflow-batch recommend`` CLI), advice about
the machine, and ``BatchConfigurationManager``, the reference API's manager.

The estimate itself lives in :mod:`airflow_batch_provider.engine.sizing` (the engine sizes auto-tuned jobs
with it); its names are re-exported here, where users have always imported them.

No Airflow imports; pandas, pyarrow and psutil load on first use.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, overload

from airflow_batch_provider.engine import sizing
from airflow_batch_provider.engine.sizing import (  # noqa: F401 - re-exported: the public tuning API
    _MB,
    _PROFILES,
    CGROUP_MEMORY_CURRENT,
    CGROUP_MEMORY_MAX,
    DEFAULT_PROFILE_NAME,
    DEFAULT_TARGET_FRACTION,
    ENCODED_COPIES,
    HIGH_LOAD_FRACTION,
    MAX_BATCH_SIZE,
    MAX_CHUNK_MB,
    MIN_BATCH_SIZE,
    SAMPLE_ROWS,
    STRING_COPIES,
    BatchRecommendation,
    DataSample,
    MachineInfo,
    _profiles,
    _read_int,
    calculate_optimal_batch_config,
    create_optimized_config,
    get_processing_profile,
    machine_info,
    profile_of,
    recommend_for_sample,
    register_processing_profile,
    sample_files,
    sample_source,
)

if TYPE_CHECKING:
    from airflow_batch_provider.config import BatchConfig
    from airflow_batch_provider.processors.base import ProcessingProfile


# ----------------------------------------------------------------------------------- system advice


log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """One piece of advice about the machine. Readable as attributes or as keys (``rec["type"]``); ``type`` is
    the reference API's name of ``kind``."""

    kind: str  # "memory" | "cpu" | "disk" | "info"
    severity: str  # "info" | "warning"
    message: str

    @property
    def type(self) -> str:
        return self.kind

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def keys(self) -> list[str]:
        return list(self.to_dict())

    def to_dict(self) -> dict[str, str]:
        return {"type": self.kind, **dataclasses.asdict(self)}


class SystemRecommendations:
    """What :func:`get_system_recommendations` returns: the advice, warnings first, in two shapes at once.

    The reference API's: ``result["recommendations"]`` is the list, each item readable as ``rec["type"]``,
    ``rec["message"]`` (and ``rec["kind"]``, ``rec["severity"]``). This project's: iterating, ``len()`` and
    indexing with a number give the :class:`Recommendation` objects.
    """

    def __init__(self, items: list[Recommendation]) -> None:
        self._items = list(items)

    @overload
    def __getitem__(self, key: str) -> list[Recommendation]: ...
    @overload
    def __getitem__(self, key: int) -> Recommendation: ...
    def __getitem__(self, key: str | int) -> list[Recommendation] | Recommendation:
        if isinstance(key, str):
            if key != "recommendations":
                raise KeyError(key)
            return list(self._items)
        return self._items[key]

    def get(self, key: str, default: Any = None) -> Any:
        return list(self._items) if key == "recommendations" else default

    def keys(self) -> list[str]:
        return ["recommendations"]

    def __iter__(self) -> Iterator[Recommendation]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __repr__(self) -> str:
        return f"SystemRecommendations({self._items!r})"

    def to_dict(self) -> dict[str, list[dict[str, str]]]:
        return {"recommendations": [r.to_dict() for r in self._items]}


LOW_MEMORY_BYTES = 1024 * _MB
HIGH_MEMORY_PERCENT = 90.0
LOW_DISK_BYTES = 1024 * _MB
LOW_DISK_FRACTION = 0.10


def _advise(machine: MachineInfo, disk_path: str, disk: Any) -> list[Recommendation]:
    out: list[Recommendation] = []
    usable = machine.usable_bytes
    if usable < LOW_MEMORY_BYTES:
        out.append(
            Recommendation(
                "memory",
                "warning",
                f"only {usable / _MB:,.0f} MB of memory available; set a small memory_limit_mb "
                "or lower max_concurrent_batches",
            )
        )
    elif machine.memory_percent >= HIGH_MEMORY_PERCENT:
        out.append(
            Recommendation(
                "memory",
                "warning",
                f"memory is {machine.memory_percent:.0f}% used; batches get smaller to fit",
            )
        )
    if machine.cgroup_limit_bytes is not None:
        out.append(
            Recommendation(
                "memory",
                "info",
                f"container memory limit {machine.cgroup_limit_bytes / _MB:,.0f} MB applies "
                "(memory targets are capped to it)",
            )
        )
    if machine.load_1min > machine.cpus:
        out.append(
            Recommendation(
                "cpu",
                "warning",
                f"load average {machine.load_1min:.2f} exceeds the {machine.cpus} CPU(s); concurrency is not "
                "reduced for it (other processes' load comes and goes): set max_concurrent_batches or use an "
                "Airflow pool to share the machine",
            )
        )
    if machine.cpus <= 2:
        out.append(
            Recommendation(
                "cpu",
                "info",
                f"only {machine.cpus} CPU(s) available to this process; cpu-intensive jobs run at most "
                f"{machine.cpus} chunk(s) at once",
            )
        )
    if disk is not None and (disk.free < LOW_DISK_BYTES or disk.free < LOW_DISK_FRACTION * disk.total):
        out.append(
            Recommendation(
                "disk",
                "warning",
                f"only {disk.free / _MB:,.0f} MB free under {disk_path}; spills and local outputs may fail",
            )
        )
    out.append(
        Recommendation(
            "info",
            "info",
            f"{machine.cpus} CPU(s), load {machine.load_1min:.2f}, {machine.available_bytes / _MB:,.0f} of "
            f"{machine.total_bytes / _MB:,.0f} MB memory available"
            + (f", {disk.free / _MB:,.0f} MB free under {disk_path}" if disk is not None else ""),
        )
    )
    return out


def get_system_recommendations() -> SystemRecommendations:
    """Human-readable advice about memory, CPU and temp-dir disk space, warnings first: iterate it for the
    :class:`Recommendation` objects, or read ``result["recommendations"]`` (the reference API's shape)."""
    path = tempfile.gettempdir()
    try:
        disk = shutil.disk_usage(path)
    except OSError:
        disk = None
    machine = sizing.machine_info()  # looked up at call time: tests patch it
    log.debug(
        "system advice inputs: %d CPU(s), load %.2f, %d of %d MB available (%.0f%% used), cgroup limit %s, "
        "%s MB free under %s",
        machine.cpus,
        machine.load_1min,
        machine.available_bytes // _MB,
        machine.total_bytes // _MB,
        machine.memory_percent,
        machine.cgroup_limit_bytes,
        "?" if disk is None else disk.free // _MB,
        path,
    )
    advice = _advise(machine, path, disk)
    return SystemRecommendations(sorted(advice, key=lambda r: r.severity != "warning"))


class BatchConfigurationManager:
    """The module's functions as methods; ``profiles`` is the shared profile registry."""

    def __init__(self) -> None:
        self.profiles = _profiles()

    def register_processing_profile(self, profile: ProcessingProfile) -> ProcessingProfile:
        return register_processing_profile(profile)

    def get_processing_profile(self, name: str) -> ProcessingProfile:
        return get_processing_profile(name)

    def calculate_optimal_batch_config(
        self,
        source_or_dataframe: Any = None,
        processor_name: str | None = None,
        target_memory_usage_mb: float | None = None,
        *,
        data: Any = None,
    ) -> BatchRecommendation:
        return calculate_optimal_batch_config(
            source_or_dataframe, processor_name, target_memory_usage_mb, data=data
        )

    def create_optimized_config(
        self,
        source_or_dataframe: Any = None,
        processor_name: str | None = None,
        base: BatchConfig | None = None,
        target_memory_usage_mb: float | None = None,
        *,
        data: Any = None,
    ) -> BatchConfig:
        return create_optimized_config(
            source_or_dataframe, processor_name, base, target_memory_usage_mb, data=data
        )

    def get_system_recommendations(self) -> SystemRecommendations:
        return get_system_recommendations()

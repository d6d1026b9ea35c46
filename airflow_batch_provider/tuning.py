"""User-facing tuning advice: batch-size recommendations (the ``airflow-batch recommend`` CLI), advice about
the machine, and ``BatchConfigurationManager``, the reference API's manager.

The estimate itself lives in :mod:`airflow_batch_provider.engine.sizing` (the engine sizes auto-tuned jobs
with it); its names are re-exported here, where users have always imported them.

No Airflow imports; pandas, pyarrow and psutil load on first use.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

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


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """One piece of advice about the machine."""

    kind: str  # "memory" | "cpu" | "disk" | "info"
    severity: str  # "info" | "warning"
    message: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


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
                f"load average {machine.load_1min:.2f} exceeds the {machine.cpus} CPU(s); "
                "recommended concurrency is reduced",
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


def get_system_recommendations() -> list[Recommendation]:
    """Human-readable advice about memory, CPU and temp-dir disk space, warnings first."""
    path = tempfile.gettempdir()
    try:
        disk = shutil.disk_usage(path)
    except OSError:
        disk = None
    advice = _advise(sizing.machine_info(), path, disk)  # looked up at call time: tests patch it
    return sorted(advice, key=lambda r: r.severity != "warning")


class BatchConfigurationManager:
    """The module's functions as methods; ``profiles`` is the shared profile registry."""

    def __init__(self) -> None:
        self.profiles = _profiles()

    def register_processing_profile(self, profile: ProcessingProfile) -> ProcessingProfile:
        return register_processing_profile(profile)

    def get_processing_profile(self, name: str) -> ProcessingProfile:
        return get_processing_profile(name)

    def calculate_optimal_batch_config(
        self, source_or_dataframe: Any, processor_name: str, target_memory_usage_mb: float | None = None
    ) -> BatchRecommendation:
        return calculate_optimal_batch_config(source_or_dataframe, processor_name, target_memory_usage_mb)

    def create_optimized_config(
        self,
        source_or_dataframe: Any,
        processor_name: str,
        base: BatchConfig | None = None,
        target_memory_usage_mb: float | None = None,
    ) -> BatchConfig:
        return create_optimized_config(source_or_dataframe, processor_name, base, target_memory_usage_mb)

    def get_system_recommendations(self) -> list[Recommendation]:
        return get_system_recommendations()

"""Batch sizes and concurrency estimated from a real data sample, the processor's profile and the machine.

The engine sizes auto-tuned jobs with :func:`recommend_for_sample`; ``calculate_optimal_batch_config`` reads
up to :data:`SAMPLE_ROWS` rows of the source's first non-empty file (a frame: of the copy a job stores), measures
the in-memory bytes per row, and sizes chunks so that ``concurrency x rows x bytes/row x
memory_overhead_factor`` stays under a memory target (default: half of the memory available to this
process, container limits included). ``create_optimized_config`` turns the result into a
:class:`~airflow_batch_provider.config.BatchConfig`. User-facing advice lives in
:mod:`airflow_batch_provider.tuning`, which re-exports all of this.

No Airflow imports; pandas, pyarrow and psutil load on first use.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from airflow_batch_provider.exceptions import ConfigError
from airflow_batch_provider.machine import usable_cpus

if TYPE_CHECKING:
    import pandas as pd

    from airflow_batch_provider.config import BatchConfig
    from airflow_batch_provider.processors.base import ProcessingProfile

log = logging.getLogger(__name__)

SAMPLE_ROWS = 10_000
MIN_BATCH_SIZE = 1_000
MAX_BATCH_SIZE = 4_000_000
#: chunks past about this much data in memory were no faster in ``benchmarks/bench_tuning.py`` (best fixed sizes:
#: 64-128 MB of rows on all three shapes; 405 MB chunks ran at 0.78x of 64 MB ones) and leave fewer chunks to
#: overlap reading, processing and writing; the online adapter may still grow past it when throughput improves
MAX_CHUNK_MB = 128
ENCODED_COPIES = 2.3  # encoded (file) bytes a chunk holds: read buffers, the part being written and its copy
STRING_COPIES = (
    1.25  # string columns cost this much more again (dictionary pages decoded, the writer's hashing)
)
DISTINCT_SHARE = (
    0.5  # a sampled column with more distinct values than this share of its values is high-cardinality
)
DEFAULT_TARGET_FRACTION = 0.5  # of the memory available to this process
HIGH_LOAD_FRACTION = 0.75  # load average above this fraction of the CPUs counts as busy
CGROUP_MEMORY_MAX = "/sys/fs/cgroup/memory.max"  # cgroup v2
CGROUP_MEMORY_CURRENT = "/sys/fs/cgroup/memory.current"
DEFAULT_PROFILE_NAME = "default"
_MB = 2**20

#: the profile's memory components besides ``memory_overhead_factor`` (:func:`memory_components`)
_COMPONENT_FIELDS = ("numeric_copies", "encoded_copies", "string_copies", "string_value_bytes", "worker_memory_mb",
                     "parent_memory_mb", "parent_memory_per_column_mb", "parent_numeric_copies",
                     "parent_distinct_numeric_copies", "parent_string_copies")  # fmt: skip

# name -> profile; built-in defaults are added on first use (ProcessingProfile lives next to pandas)
_PROFILES: dict[str, ProcessingProfile] = {}


def _builtin_profiles() -> dict[str, ProcessingProfile]:
    from airflow_batch_provider.processors.base import ProcessingProfile as P

    # the four standard processors' memory components (memory_components), fitted on the peak tree PSS of jobs at
    # 400 and 2,000 MB targets in benchmarks/bench_estimates.py: quality and anomaly detection on its mixed,
    # wide_nulls, long_text and categoricals shapes (checked on events, sensors, orders, ratios); profiling and
    # feature engineering on those and events, sensors (checked on orders, ratios)
    return {
        "data_profiling": P("data_profiling", cpu_intensive=True, estimated_processing_time_per_row_ms=0.002,
                            memory_overhead_factor=0.7, numeric_copies=0.6, encoded_copies=1.0,
                            string_copies=0.0, string_value_bytes=20.0, worker_memory_mb=25.0,
                            parent_memory_mb=30.0, parent_memory_per_column_mb=2.5),
        "data_quality": P("data_quality", cpu_intensive=True, estimated_processing_time_per_row_ms=0.002,
                          memory_overhead_factor=0.5, numeric_copies=2.0, encoded_copies=1.5,
                          string_value_bytes=20.0, worker_memory_mb=25.0, parent_memory_mb=60.0,
                          parent_memory_per_column_mb=1.6),
        "feature_engineering": P("feature_engineering", cpu_intensive=True, memory_intensive=True,
                                 estimated_processing_time_per_row_ms=0.003, memory_overhead_factor=1.2,
                                 encoded_copies=0.0, string_copies=1.0, string_value_bytes=4.0,
                                 worker_memory_mb=25.0, parent_memory_mb=180.0,
                                 parent_distinct_numeric_copies=2.25),
        "anomaly_detection": P("anomaly_detection", cpu_intensive=True, memory_intensive=True,
                               estimated_processing_time_per_row_ms=0.005, memory_overhead_factor=0.4,
                               numeric_copies=1.2, string_copies=0.5, string_value_bytes=24.0,
                               worker_memory_mb=25.0, parent_memory_mb=10.0, parent_numeric_copies=2.0),
        "passthrough": P("passthrough", cpu_intensive=False, io_intensive=True,
                         estimated_processing_time_per_row_ms=0.0002, memory_overhead_factor=1.6),
        "count": P("count", cpu_intensive=False, io_intensive=True,
                   estimated_processing_time_per_row_ms=0.0001, memory_overhead_factor=1.5),
        DEFAULT_PROFILE_NAME: P(DEFAULT_PROFILE_NAME),
    }  # fmt: skip


def _profiles() -> dict[str, ProcessingProfile]:
    if DEFAULT_PROFILE_NAME not in _PROFILES:
        for name, profile in _builtin_profiles().items():
            _PROFILES.setdefault(name, profile)
    return _PROFILES


def processing_profile_names() -> list[str]:
    """The names with a registered profile (the built-ins', ``"default"`` and any registered since)."""
    return sorted(_profiles())


def register_processing_profile(profile: ProcessingProfile) -> ProcessingProfile:
    """Register (or replace) the cost profile of a processor, by ``profile.processor_name``."""
    from airflow_batch_provider.processors.base import ProcessingProfile

    if not isinstance(profile, ProcessingProfile):
        raise ConfigError(f"register_processing_profile expects a ProcessingProfile, got {profile!r}")
    if not profile.processor_name:
        raise ConfigError("ProcessingProfile.processor_name must not be empty")
    if profile.memory_overhead_factor <= 0 or profile.estimated_processing_time_per_row_ms < 0:
        raise ConfigError(
            f"ProcessingProfile {profile.processor_name!r}: memory_overhead_factor must be > 0 and "
            "estimated_processing_time_per_row_ms >= 0"
        )
    negative = [name for name in _COMPONENT_FIELDS if (getattr(profile, name) or 0) < 0]
    if negative:
        raise ConfigError(
            f"ProcessingProfile {profile.processor_name!r}: {', '.join(negative)} must be >= 0 (memory components)"
        )
    _profiles()[profile.processor_name] = profile
    return profile


def get_processing_profile(name: str) -> ProcessingProfile:
    """The registered profile, else the processor class's own ``profile``, else the generic default."""
    profiles = _profiles()
    if name in profiles:
        return profiles[name]
    from airflow_batch_provider.processors.base import ProcessingProfile

    try:
        from airflow_batch_provider.processors.registry import lookup

        declared = getattr(lookup(name), "profile", None)
    except Exception:  # unknown name or import path: the generic default
        declared = None
    if isinstance(declared, ProcessingProfile):
        return declared
    return dataclasses.replace(profiles[DEFAULT_PROFILE_NAME], processor_name=name)


# --------------------------------------------------------------------------------------------- machine


@dataclasses.dataclass(frozen=True)
class MachineInfo:
    """The machine as this process sees it."""

    cpus: int
    load_1min: float
    available_bytes: int
    total_bytes: int
    memory_percent: float
    cgroup_limit_bytes: int | None = None
    cgroup_usage_bytes: int | None = None
    #: this process's own memory now (PSS where Linux reports it, else RSS): a job started here has it in its
    #: process tree from the start (0: not counted)
    process_bytes: int = 0

    @property
    def usable_bytes(self) -> int:
        """Available memory, capped by what the cgroup limit still allows."""
        if self.cgroup_limit_bytes is None:
            return self.available_bytes
        room = self.cgroup_limit_bytes - (self.cgroup_usage_bytes or 0)
        return max(0, min(self.available_bytes, room))


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def process_memory_bytes() -> int:
    """This process's memory now: its PSS (``/proc/self/smaps_rollup``; shared pages split between the
    processes mapping them, as a job's tree is measured), else its RSS."""
    try:
        with open("/proc/self/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    import psutil

    return int(psutil.Process().memory_info().rss)


def _cpus() -> int:
    return usable_cpus()


def machine_info() -> MachineInfo:
    """CPUs, load, memory (psutil) and the cgroup v2 memory limit when one is set."""
    import psutil

    vm = psutil.virtual_memory()
    try:
        load = float(psutil.getloadavg()[0])
    except (AttributeError, OSError):
        load = 0.0
    limit = _read_int(CGROUP_MEMORY_MAX)
    return MachineInfo(
        cpus=_cpus(),
        load_1min=load,
        available_bytes=int(vm.available),
        total_bytes=int(vm.total),
        memory_percent=float(vm.percent),
        cgroup_limit_bytes=limit,
        cgroup_usage_bytes=_read_int(CGROUP_MEMORY_CURRENT) if limit is not None else None,
        process_bytes=process_memory_bytes(),
    )


# ----------------------------------------------------------------------------------------------- sample


@dataclasses.dataclass(frozen=True)
class DataSample:
    """What a real sample says about the rows."""

    label: str
    sample_rows: int
    total_rows: int
    bytes_per_row: float
    column_types: dict[str, int]
    mean_string_width: float | None
    read_seconds_per_row: float = 0.0
    #: bytes per row in the source files (Parquet after compression, CSV text): a chunk also holds about
    #: ``ENCODED_COPIES`` times this (page buffers read, the part written and its copy)
    encoded_bytes_per_row: float = 0.0
    #: the part of ``bytes_per_row`` in string columns (counted ``STRING_COPIES`` more times)
    string_bytes_per_row: float = 0.0
    #: the largest Parquet row group: a chunk decodes whole row groups, and the last ones it used only in
    #: part stay cached in its worker, so up to about this many rows more than the chunk are in memory
    row_group_rows: int = 0
    #: False when ``total_rows`` is partly extrapolated: text files (CSV / JSON Lines) after the first are not
    #: indexed here, their rows are estimated from their size (Parquet counts come from the footers: exact)
    total_rows_exact: bool = True
    #: how many text files' rows were estimated from their size
    estimated_files: int = 0
    #: the part of ``bytes_per_row`` in numeric, date and boolean columns (what fits and sorts copy)
    numeric_bytes_per_row: float = 0.0
    #: the part of ``numeric_bytes_per_row`` in columns whose sampled values are mostly distinct (more than
    #: ``DISTINCT_SHARE`` of the non-null ones): exact statistics over them keep about one entry per row
    distinct_numeric_bytes_per_row: float = 0.0


def _describe(
    label: str,
    df: pd.DataFrame,
    total_rows: int,
    read_s: float,
    row_group_rows: int = 0,
    encoded_bytes_per_row: float = 0.0,
) -> DataSample:
    import pandas as pd

    n = len(df)
    usage = df.memory_usage(deep=True, index=True)
    bpr = float(usage.sum()) / n if n else 0.0
    string_bytes = numeric_bytes = distinct_bytes = 0.0
    kinds: dict[str, int] = {}
    widths: list[float] = []
    for name in df.columns:
        col = df[name]
        dtype = col.dtype
        if pd.api.types.is_bool_dtype(dtype):
            kind = "bool"
        elif pd.api.types.is_numeric_dtype(dtype):
            kind = "numeric"
        elif pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.DatetimeTZDtype):
            kind = "datetime"
        elif pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
            kind = "string"
            string_bytes += float(usage[name])
            values = col.dropna()
            values = values[values.map(lambda v: isinstance(v, str))]
            if len(values):
                widths.append(float(values.str.len().mean()))
        else:
            kind = "other"
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind in ("bool", "numeric", "datetime"):
            numeric_bytes += float(usage[name])
            present = int(col.count())
            if kind != "bool" and present and col.nunique() > DISTINCT_SHARE * present:
                distinct_bytes += float(usage[name])
    return DataSample(
        label=label,
        sample_rows=n,
        total_rows=total_rows,
        bytes_per_row=bpr,
        column_types=kinds,
        mean_string_width=sum(widths) / len(widths) if widths else None,
        read_seconds_per_row=read_s / n if n else 0.0,
        encoded_bytes_per_row=encoded_bytes_per_row,
        string_bytes_per_row=string_bytes / n if n else 0.0,
        row_group_rows=row_group_rows,
        numeric_bytes_per_row=numeric_bytes / n if n else 0.0,
        distinct_numeric_bytes_per_row=distinct_bytes / n if n else 0.0,
    )


def sample_source(source: Any, rows: int = SAMPLE_ROWS) -> DataSample:
    """Read up to ``rows`` rows of the first non-empty file of a source.

    An in-memory frame (pandas or polars DataFrame, pyarrow Table) is first written to a temporary folder exactly
    as a job stores it (:mod:`~airflow_batch_provider.engine.memory_sources`: Parquet, the same row groups), and
    that copy is sampled: the recommendation for a frame is the one for the file the job would run on.
    Anything that is not a source is a ``SourceError`` naming its type.
    """
    from airflow_batch_provider.engine import memory_sources

    kind = memory_sources.frame_kind(source)
    if kind is not None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="abp-sample-") as folder:
            stored = memory_sources.store(source, folder, kind)
            sample = sample_source(stored.location, rows)
        return dataclasses.replace(sample, label=f"{memory_sources._KINDS[kind]} ({stored.rows} rows)")
    if isinstance(source, memory_sources.StoredFrame):
        source = source.location
    memory_sources.check_source(source)

    from airflow_batch_provider.engine import sources
    from airflow_batch_provider.engine.textformats import TextOptions
    from airflow_batch_provider.storage import Location

    loc = Location.of(source)
    options = TextOptions()
    files = sources.stat_files(loc.fs, sources.list_source_files(loc))
    planned: list[Any] = []
    schema, unknown_bytes, unknown_files = None, 0, 0
    for f in files:
        if schema is not None and f.format != "parquet":
            unknown_bytes += f.size  # CSV / JSON Lines: rows extrapolated, not indexed here
            unknown_files += 1
            continue
        metas, file_schema = sources.build_plan(loc.fs, [f], options)  # Parquet: footer only
        planned.append(metas[0])
        if schema is None and metas[0].rows:
            schema = file_schema  # the schema of the file sample_files reads
    sample = sample_files(loc.fs, planned, schema, options, rows=rows, label=loc.uri)
    known_rows, known_bytes = sample.total_rows, sum(f.size for f in planned)
    if unknown_files:
        extrapolated = int(unknown_bytes * known_rows / known_bytes) if known_bytes else 0
        sample = dataclasses.replace(
            sample,
            total_rows=known_rows + extrapolated,
            total_rows_exact=False,
            estimated_files=unknown_files,
        )
    return sample


def sample_files(
    fs: Any,
    files: list[Any],
    schema: Any,
    options: Any,
    *,
    columns: list[str] | None = None,
    rows: int = SAMPLE_ROWS,
    label: str = "",
    max_bad_rows: int | None = None,
) -> DataSample:
    """Read up to ``rows`` rows of the first non-empty file of a planned source (``sources.SourceFile``
    list, as the engine has it) and describe them; ``columns``: only these columns are read.
    ``max_bad_rows``: up to this many rows that cannot be read are left out (None: the first one fails)."""
    from airflow_batch_provider.engine import sources

    label = label or (files[0].path if files else "the source")
    total = sum(f.rows for f in files)
    row_group_rows = max((n for f in files for n in f.row_groups), default=0)
    first = next((f for f in files if f.rows), None)
    if first is None:
        return DataSample(label, 0, 0, 0.0, {}, None)
    started = time.perf_counter()
    table, _ = sources.read_good_rows(
        fs, first, 0, min(rows, first.rows), schema, options, columns, limit=max_bad_rows
    )
    sources.clear_row_group_cache()  # the sample's row group is not needed again in this process
    from airflow_batch_provider.processors.frames import arrow_to_pandas

    df = arrow_to_pandas(table)  # as a chunk reaches a pandas processor (dates past 9999 and all)
    encoded = sum(f.size for f in files if f.rows) / total
    return _describe(label, df, total, time.perf_counter() - started, row_group_rows, encoded)


# ------------------------------------------------------------------------------------- recommendation


@dataclasses.dataclass(frozen=True)
class BatchRecommendation:
    """A batch size and concurrency, what they should cost, and why."""

    recommended_batch_size: int
    recommended_concurrency: int
    estimated_memory_usage_mb: float
    estimated_duration_s: float
    reasons: list[str]
    processor_name: str = ""
    target_memory_usage_mb: float = 0.0
    bytes_per_row: float = 0.0
    total_rows: int = 0
    row_group_rows: int = 0
    row_cost_bytes: float = 0.0  # memory per row of a chunk in its worker, as estimated
    total_rows_exact: bool = True  # False: total_rows is partly extrapolated from text files' sizes
    #: ``estimated_memory_usage_mb`` by component (see :func:`memory_components`); ``chunks`` is the part the
    #: batch size controls and the memory target bounds
    memory_components_mb: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _floor_2_significant(n: int) -> int:
    if n < 100:
        return n
    step = 10 ** (len(str(n)) - 2)
    return n // step * step


def _target_bytes(target_mb: float | None, machine: MachineInfo, reasons: list[str]) -> float:
    usable = machine.usable_bytes
    cg = machine.cgroup_limit_bytes
    cg_text = f", cgroup limit {cg / _MB:,.0f} MB" if cg is not None else ", no cgroup memory limit"
    reasons.append(
        f"machine: {machine.cpus} CPU(s), load {machine.load_1min:.2f}, "
        f"{machine.available_bytes / _MB:,.0f} MB available{cg_text}"
    )
    if target_mb is None:
        target = max(64 * _MB, DEFAULT_TARGET_FRACTION * usable)
        reasons.append(
            f"memory target {target / _MB:,.0f} MB: {DEFAULT_TARGET_FRACTION:.0%} of the "
            f"{usable / _MB:,.0f} MB this process may still use"
        )
        return target
    target = float(target_mb) * _MB
    if cg is not None and target > cg:
        reasons.append(f"memory target {target_mb:,.0f} MB capped to the cgroup limit {cg / _MB:,.0f} MB")
        return float(cg)
    reasons.append(f"memory target {target_mb:,.0f} MB (given)")
    return target


def _base_concurrency(profile: ProcessingProfile, machine: MachineInfo, reasons: list[str]) -> int:
    cpus = max(1, machine.cpus)
    if profile.cpu_intensive:
        conc, why = cpus, "one worker per CPU (cpu-intensive)"
    elif profile.io_intensive:
        conc, why = min(2 * cpus, 32), "two workers per CPU (io-intensive)"
    else:
        conc, why = max(1, cpus // 2), "one worker per two CPUs"
    if machine.load_1min > HIGH_LOAD_FRACTION * cpus:
        # never fewer workers than usable CPUs because of the load alone: other processes' load comes and goes
        # while the job runs, and one worker on a 2-CPU machine halves the job for the whole run. On a shared
        # machine max_concurrent_batches and Airflow pools are the controls (docs/tuning.md).
        reasons.append(
            f"concurrency {conc}: {why} (load {machine.load_1min:.2f} on {cpus} CPU(s) is high; not reduced: "
            "set max_concurrent_batches or use an Airflow pool to share the machine)"
        )
        return conc
    reasons.append(f"concurrency {conc}: {why}")
    return conc


def _throughput_cap(size: int, bytes_per_row: float, reasons: list[str]) -> int:
    """``size``, or fewer rows when a chunk would hold more than about ``MAX_CHUNK_MB`` in memory."""
    fast = int(MAX_CHUNK_MB * _MB / bytes_per_row)
    if size > fast >= MIN_BATCH_SIZE:
        reasons.append(
            f"batch size {size:,} -> {fast:,}: about {MAX_CHUNK_MB} MB of rows per chunk is as fast as bigger "
            "chunks and leaves memory free"
        )
        return fast
    return size


def rows_in_total(data: DataSample) -> str:
    """``"1,200,000 rows in total"`` (exact: Parquet footers, indexed text files), or the estimate, labelled."""
    if data.total_rows_exact:
        return f"{data.total_rows:,} rows in total"
    return (
        f"about {data.total_rows:,} rows in total (estimate: the rows of {data.estimated_files} text file(s) "
        "after the first are extrapolated from their size; a job counts them exactly)"
    )


def _sample_bytes_per_row(data: DataSample, reasons: list[str]) -> float:
    """In-memory bytes per row from the sample (100 when there is nothing to sample), with the reason."""
    if not data.sample_rows:
        reasons.append(f"{data.label} has no rows to sample; assuming 100 bytes per row")
        return 100.0
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(data.column_types.items())) or "no"
    width = (
        "" if data.mean_string_width is None else f", mean string width {data.mean_string_width:.1f} chars"
    )
    reasons.append(
        f"sample of {data.sample_rows:,} rows of {data.label}: {data.bytes_per_row:,.0f} bytes per row in memory "
        f"({kinds} columns{width}); {rows_in_total(data)}"
    )
    if data.encoded_bytes_per_row:
        reasons.append(f"{data.encoded_bytes_per_row:,.0f} bytes per row in the source files")
    return max(1.0, data.bytes_per_row)


def _profile_reason(profile: ProcessingProfile) -> str:
    traits = [t for t, on in (("cpu", profile.cpu_intensive), ("memory", profile.memory_intensive),
                              ("io", profile.io_intensive)) if on]  # fmt: skip
    return (
        f"processor {profile.processor_name!r}: memory overhead x{profile.memory_overhead_factor:g}, "
        f"{profile.estimated_processing_time_per_row_ms:g} ms/row"
        + "".join(f", {t}-intensive" for t in traits)
    )


def _clamp(size: int, reasons: list[str]) -> int:
    if size < MIN_BATCH_SIZE or size > MAX_BATCH_SIZE:
        size = min(MAX_BATCH_SIZE, max(MIN_BATCH_SIZE, size))
        reasons.append(f"batch size clamped to {size:,} (range {MIN_BATCH_SIZE:,}-{MAX_BATCH_SIZE:,})")
    return _floor_2_significant(size)


#: a job's plan has at least this many chunks per worker when the source has enough rows
#: (``CHUNKS_PER_WORKER x workers x MIN_BATCH_SIZE``): with fewer, the last chunks leave workers idle (3 chunks
#: on 2 workers: one worker idle for the last third). The engine's sizing applies it (:func:`recommend_for_sample`);
#: the advice functions (``calculate_optimal_batch_config``) give the memory-bound size.
CHUNKS_PER_WORKER = 4


def _balance(size: int, total: int, conc: int, reasons: list[str], per_worker: int = 1) -> int:
    """The same number of equal chunks for every worker, at least ``per_worker`` each when the source has
    ``per_worker x conc x MIN_BATCH_SIZE`` rows, and never more rows than the source has."""
    if total and (conc > 1 or per_worker > 1):
        balanced = math.ceil(math.ceil(total / size) / conc) * conc
        if total >= per_worker * conc * MIN_BATCH_SIZE:
            balanced = max(balanced, per_worker * conc)
        spread = max(MIN_BATCH_SIZE, math.ceil(total / balanced))
        if spread < size and total > MIN_BATCH_SIZE * conc:
            least = f", at least {per_worker} each" if per_worker > 1 else ""
            reasons.append(
                f"batch size {size:,} -> {spread:,}: {balanced} equal chunk(s), the same number for each of "
                f"{conc} worker(s){least}"
            )
            size = spread
    if total and size > total:
        reasons.append(f"batch size capped to the {total:,} rows of the source")
        size = total
    return max(1, size)


#: chunks of fewer row groups than this are cut at row-group edges (:func:`_align_to_row_groups`)
ALIGN_BELOW_GROUPS = 8


def _align_to_row_groups(
    size: int, bound: int, total: int, conc: int, group_rows: int, reasons: list[str]
) -> int:
    """Chunks of whole row groups: a chunk that starts or ends inside a row group decodes all of it, so two
    chunks decode that group (a 250,000-row chunk over 100,000-row groups decodes 300,000 rows; a 62,500-row one
    100,000 or 200,000).

    - A chunk of fewer than ``ALIGN_BELOW_GROUPS`` row groups goes down (at most to half) to a multiple of
      ``group_rows``: the largest whose chunk count is a multiple of ``conc`` (the same number of chunks for
      each worker), else the largest. Longer chunks lose less than that share to an edge.
    - A chunk smaller than a row group grows to one row group when the memory-bound size ``bound`` holds it and
      the source has a row group for each worker: fewer chunks per worker than the balance asked for, but each
      group decoded once.
    """
    if not group_rows or not total or total <= size or size % group_rows == 0:
        return size
    if size < group_rows:
        if bound < group_rows or total < conc * group_rows:
            return size
        reasons.append(
            f"batch size {size:,} -> {group_rows:,}: one row group per chunk ({math.ceil(total / group_rows)} "
            "chunk(s)): a smaller chunk decodes its whole row group"
        )
        return group_rows
    if size >= ALIGN_BELOW_GROUPS * group_rows:
        return size
    most = size // group_rows
    chosen = most
    for k in range(most, max(1, math.ceil(most / 2)) - 1, -1):
        if conc <= 1 or math.ceil(total / (k * group_rows)) % conc == 0:
            chosen = k
            break
    aligned = chosen * group_rows
    reasons.append(
        f"batch size {size:,} -> {aligned:,}: whole row groups of {group_rows:,} rows ("
        f"{math.ceil(total / aligned)} chunk(s); no row group decoded by two chunks)"
    )
    return aligned


def row_cost(data: DataSample, profile: ProcessingProfile, bytes_per_row: float | None = None) -> float:
    """Bytes one row of a chunk costs in its worker: the processor's copies of the DataFrame, of its numeric
    columns and of its string columns, a cost per string value, plus the encoded bytes (read buffers, the part
    written and its copy)."""
    bpr = data.bytes_per_row if bytes_per_row is None else bytes_per_row
    encoded = ENCODED_COPIES if profile.encoded_copies is None else profile.encoded_copies
    strings = STRING_COPIES if profile.string_copies is None else profile.string_copies
    string_bytes = data.string_bytes_per_row if data.sample_rows else 0.0
    numeric_bytes = data.numeric_bytes_per_row if data.sample_rows else 0.0
    return (
        profile.memory_overhead_factor * bpr
        + profile.numeric_copies * numeric_bytes
        + encoded * data.encoded_bytes_per_row
        + strings * string_bytes
        + profile.string_value_bytes * (data.column_types.get("string", 0) if data.sample_rows else 0)
    )


def memory_components(
    data: DataSample,
    profile: ProcessingProfile,
    machine: MachineInfo,
    rows: int,
    workers: int,
    cost: float | None = None,
) -> dict[str, float]:
    """What a job's process tree holds at its peak, in MB, by component (their sum is the estimate):

    - ``process``: the process the job starts in, as it is now (interpreter, imports, whatever it holds);
    - ``processor_parent``: the processor's fixed share in the job's parent (imports such as scikit-learn,
      merged statistics: ``parent_memory_mb`` + ``parent_memory_per_column_mb`` x columns);
    - ``fit_state``: what a fit over the whole source keeps in the parent: rows x (``parent_numeric_copies`` x
      numeric bytes + ``parent_distinct_numeric_copies`` x bytes of the mostly-distinct numeric columns +
      ``parent_string_copies`` x string bytes, per row);
    - ``workers``: each worker's own pages beyond its chunk (``worker_memory_mb`` x workers);
    - ``chunks``: ``workers x (rows + row_group_rows) x row_cost``, the part the batch size controls. A
      statistics pass runs chunks of the same size before the main pass; the processor's row cost is that of
      the costlier of the two passes.
    """
    cost = row_cost(data, profile) if cost is None else cost
    columns = sum(data.column_types.values())
    extra = min(data.row_group_rows, data.total_rows) if data.total_rows else data.row_group_rows
    numeric_mb = data.total_rows * data.numeric_bytes_per_row / _MB
    string_mb = data.total_rows * data.string_bytes_per_row / _MB
    distinct_mb = data.total_rows * data.distinct_numeric_bytes_per_row / _MB
    return {
        "process": round(machine.process_bytes / _MB, 3),
        "processor_parent": round(
            profile.parent_memory_mb + profile.parent_memory_per_column_mb * columns, 3
        ),
        "fit_state": round(
            profile.parent_numeric_copies * numeric_mb
            + profile.parent_distinct_numeric_copies * distinct_mb
            + profile.parent_string_copies * string_mb,
            3,
        ),
        "workers": round(workers * profile.worker_memory_mb, 3),
        "chunks": round(workers * (rows + extra) * cost / _MB, 3),
    }


def _recommend(
    data: DataSample,
    profile: ProcessingProfile,
    machine: MachineInfo,
    target_mb: float | None,
    concurrency: int | None = None,
    per_worker: int = 1,
) -> BatchRecommendation:
    log.debug(
        "sizing inputs: %s: %d of %d rows sampled, %.1f bytes/row in memory (%.1f in strings), %.1f encoded, "
        "row groups up to %d rows, columns %s; profile %s (overhead x%g, %g ms/row, cpu=%s memory=%s io=%s); "
        "machine %d CPU(s), load %.2f, %d MB usable (cgroup limit %s); target %s MB; concurrency %s",
        data.label,
        data.sample_rows,
        data.total_rows,
        data.bytes_per_row,
        data.string_bytes_per_row,
        data.encoded_bytes_per_row,
        data.row_group_rows,
        data.column_types,
        profile.processor_name,
        profile.memory_overhead_factor,
        profile.estimated_processing_time_per_row_ms,
        profile.cpu_intensive,
        profile.memory_intensive,
        profile.io_intensive,
        machine.cpus,
        machine.load_1min,
        machine.usable_bytes // _MB,
        machine.cgroup_limit_bytes,
        "default" if target_mb is None else f"{target_mb:g}",
        "auto" if concurrency is None else concurrency,
    )
    reasons: list[str] = []
    bpr = _sample_bytes_per_row(data, reasons)
    overhead = profile.memory_overhead_factor
    # what one row of a chunk costs in its worker (row_cost: the processor's copies of the DataFrame, of its
    # numeric and string columns, plus the encoded bytes)
    strings = data.string_bytes_per_row if data.sample_rows else 0.0
    numeric = data.numeric_bytes_per_row if data.sample_rows else 0.0
    encoded_copies = ENCODED_COPIES if profile.encoded_copies is None else profile.encoded_copies
    string_copies = STRING_COPIES if profile.string_copies is None else profile.string_copies
    cost = row_cost(data, profile, bpr)
    reasons.append(_profile_reason(profile))
    target = _target_bytes(target_mb, machine, reasons)
    if concurrency:
        conc = int(concurrency)
        reasons.append(f"concurrency {conc}: configured (max_concurrent_batches)")
    else:
        conc = _base_concurrency(profile, machine, reasons)
    extra = data.row_group_rows  # rows decoded beyond the chunk: row-group edges and the worker's cache
    if extra:
        reasons.append(f"up to {extra:,} more rows per worker decoded at row-group edges (cached)")

    def rows_for(c: int) -> int:
        return int(target / (c * cost) - extra)

    if conc > 1 and rows_for(conc) < MIN_BATCH_SIZE and not concurrency:
        fitted = max(1, min(conc, int(target / ((MIN_BATCH_SIZE + extra) * cost))))
        reasons.append(
            f"concurrency {conc} -> {fitted}: {conc} chunks of {MIN_BATCH_SIZE:,} rows would not fit "
            f"in {target / _MB:,.0f} MB"
        )
        conc = fitted
    size = rows_for(conc)
    numeric_text = f" + {profile.numeric_copies:g} x {numeric:,.0f} numeric" if profile.numeric_copies else ""
    strings_text = f" + {string_copies:g} x {strings:,.0f} in strings" if strings and string_copies else ""
    string_columns = data.column_types.get("string", 0) if data.sample_rows else 0
    if profile.string_value_bytes and string_columns:
        strings_text += f" + {profile.string_value_bytes:g} x {string_columns} string values"
    reasons.append(
        f"{conc} x (rows{f' + {extra:,}' if extra else ''}) x {cost:,.0f} bytes per row ({overhead:g} x "
        f"{bpr:,.0f}{numeric_text} + {encoded_copies:g} x {data.encoded_bytes_per_row:,.0f} encoded"
        f"{strings_text}) <= {target / _MB:,.0f} MB gives {size:,} rows per chunk"
    )
    total = data.total_rows
    bound = _clamp(_throughput_cap(size, bpr, reasons), reasons)
    size = _balance(bound, total, conc, reasons, per_worker)
    if per_worker > 1:  # the engine's own sizing (the advice functions give the memory-bound size)
        size = _align_to_row_groups(size, bound, total, conc, data.row_group_rows, reasons)
    chunks = math.ceil(total / size) if total else 1
    if chunks < conc and not concurrency:
        reasons.append(f"concurrency {conc} -> {chunks}: only {chunks} chunk(s)")
        conc = max(1, chunks)
    busy = min(conc, chunks)  # workers holding a chunk at once
    components = memory_components(data, profile, machine, size, busy, cost)
    memory_mb = sum(components.values())
    reasons.append(
        f"estimated peak {memory_mb:,.0f} MB: "
        + ", ".join(f"{name.replace('_', ' ')} {mb:,.0f}" for name, mb in components.items())
    )
    fixed = memory_mb - components["chunks"]
    if memory_mb > target / _MB and fixed > 0.05 * memory_mb:
        reasons.append(
            f"the estimate is over the {target / _MB:,.0f} MB target by what smaller chunks do not reduce "
            f"({fixed:,.0f} MB outside the chunks): the target bounds the chunks"
        )
    per_row_s = data.read_seconds_per_row + profile.estimated_processing_time_per_row_ms / 1000
    duration = total * per_row_s / conc
    return BatchRecommendation(
        recommended_batch_size=int(size),
        recommended_concurrency=int(conc),
        estimated_memory_usage_mb=round(memory_mb, 3),
        estimated_duration_s=round(duration, 3),
        reasons=reasons,
        processor_name=profile.processor_name,
        target_memory_usage_mb=round(target / _MB, 3),
        bytes_per_row=round(bpr, 3),
        total_rows=total,
        row_group_rows=extra,
        row_cost_bytes=round(cost, 3),
        total_rows_exact=data.total_rows_exact,
        memory_components_mb=components,
    )


def _check_target(target_memory_usage_mb: Any) -> None:
    if target_memory_usage_mb is not None and (
        isinstance(target_memory_usage_mb, bool)
        or not isinstance(target_memory_usage_mb, (int, float))
        or not target_memory_usage_mb > 0
    ):
        raise ConfigError(f"target_memory_usage_mb must be a number > 0, got {target_memory_usage_mb!r}")


def _data_argument(source_or_dataframe: Any, data: Any) -> Any:
    """The source given positionally (``source_or_dataframe``) or as the reference API's ``data=``."""
    if source_or_dataframe is not None and data is not None:
        raise ConfigError("give the source once: positionally (source_or_dataframe) or as data=, not both")
    chosen = data if source_or_dataframe is None else source_or_dataframe
    if chosen is None:
        raise ConfigError(
            "no data: pass a source (path, URI, ObjectStoragePath) or a frame, e.g. "
            "calculate_optimal_batch_config(data=df, processor_name='data_quality')"
        )
    return chosen


def calculate_optimal_batch_config(
    source_or_dataframe: Any = None,
    processor_name: str | None = None,
    target_memory_usage_mb: float | None = None,
    *,
    data: Any = None,
) -> BatchRecommendation:
    """Recommend a batch size and concurrency for a source (path, URI, ObjectStoragePath) or an in-memory frame
    (pandas or polars DataFrame, pyarrow Table: sampled from the Parquet copy a job would store, see
    :func:`sample_source`).

    :param source_or_dataframe: the data; or pass it as ``data=`` (the reference API's keyword).
    :param processor_name: a processing profile's name (the standard processors', or one registered with
        :func:`register_processing_profile`); ``None``: the generic default profile.
    :param target_memory_usage_mb: the memory the job may use; default: half of what this process can use.

    Raises :class:`~airflow_batch_provider.exceptions.SourceError` for a missing or unreadable source (or one of
    an unsupported type) and :class:`~airflow_batch_provider.exceptions.ConfigError` for a bad target.
    """
    _check_target(target_memory_usage_mb)
    before = process_memory_bytes()  # this process as a job would start in it, before the sample is read
    sample = sample_source(_data_argument(source_or_dataframe, data))
    profile = get_processing_profile(processor_name or DEFAULT_PROFILE_NAME)
    machine = dataclasses.replace(machine_info(), process_bytes=before)
    return _recommend(sample, profile, machine, target_memory_usage_mb)


def profile_of(processor: Any) -> ProcessingProfile:
    """The profile of a processor instance: one registered under its name (a callable's registered name),
    else its class's ``profile``, else the generic default."""
    from airflow_batch_provider.processors.base import ProcessingProfile

    for name in (getattr(processor, "label", None), getattr(processor, "name", None)):
        if isinstance(name, str) and name in _profiles():
            return _profiles()[name]
    declared = getattr(processor, "profile", None)
    if isinstance(declared, ProcessingProfile):
        return declared
    name = str(getattr(processor, "label", None) or getattr(processor, "name", "processor"))
    return dataclasses.replace(_profiles()[DEFAULT_PROFILE_NAME], processor_name=name)


def recommend_for_sample(
    data: DataSample,
    processor: Any,
    target_memory_usage_mb: float | None = None,
    concurrency: int | None = None,
) -> BatchRecommendation:
    """What the engine calls (``auto_optimize`` without ``batch_size``): the recommendation for a sample
    it already read (:func:`sample_files`), a processor name or instance, and a fixed ``concurrency``
    when ``max_concurrent_batches`` is set (None: chosen here)."""
    _check_target(target_memory_usage_mb)
    profile = get_processing_profile(processor) if isinstance(processor, str) else profile_of(processor)
    return _recommend(data, profile, machine_info(), target_memory_usage_mb, concurrency, CHUNKS_PER_WORKER)


def create_optimized_config(
    source_or_dataframe: Any = None,
    processor_name: str | None = None,
    base: BatchConfig | None = None,
    target_memory_usage_mb: float | None = None,
    *,
    data: Any = None,
) -> BatchConfig:
    """``base`` (default ``BatchConfig()``) with ``batch_size``, ``max_concurrent_batches`` and
    ``memory_limit_mb`` set from :func:`calculate_optimal_batch_config` (same arguments; ``data=`` too)."""
    from airflow_batch_provider.config import BatchConfig

    rec = calculate_optimal_batch_config(
        _data_argument(source_or_dataframe, data), processor_name, target_memory_usage_mb
    )
    base = base if base is not None else BatchConfig()
    return base.with_overrides(
        {
            "batch_size": rec.recommended_batch_size,
            "max_concurrent_batches": rec.recommended_concurrency,
            "memory_limit_mb": max(16, math.ceil(rec.target_memory_usage_mb)),
        }
    )

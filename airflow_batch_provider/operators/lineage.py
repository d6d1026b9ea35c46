"""Assets and OpenLineage for the batch operators.

- **The asset** a job's output is declared as (an outlet of the task): a URI that stays the same from run to run.
  Each run writes its own job folder (``{base_path}/{dag_id}/{run_id}/{task_id}/{map_index}``), so the default
  asset is that folder without the run: ``{base_path}/{dag_id}/{task_id}``. An explicit ``output_path`` is the
  asset as it is; a templated one (``s3://bucket/out/{{ ds }}``) gives its folder before the first Jinja
  expression (``s3://bucket/out``); one with no static folder at all (``{{ params.out }}``) gives
  ``x-batch-provider://{dag_id}/{task_id}``. ``asset=`` on the operator names it exactly.
- **The asset event's extra**: the facts of one run (its output folder, rows, schema, quality score).
- **OpenLineage**: one input and one output dataset per job, with the profile as a data-quality metrics facet and
  the quality rules as a data-quality assertions facet. The OpenLineage provider and client (the ``openlineage``
  extra) are imported only when the provider's listener asks for the facets.

Airflow-facing: the engine and the processors know nothing of assets or lineage; this module reads what they
wrote in the job folder (``_manifest.json``, ``_report.json``, the plan's schema).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

#: the scheme of an asset whose location is only known at run time (Airflow leaves ``x-`` schemes unnormalized)
RUN_TIME_SCHEME = "x-batch-provider"
_JINJA_OPENERS = ("{{", "{%", "{#")
_LOCAL_SCHEMES = ("", "file", "local")


def location_uri(location: Any) -> str:
    """A storage location as an asset URI: local paths as ``file:///abs/path``, no connection id (the
    ``conn_id@`` part names credentials, not data), no trailing slash."""
    text = os.fspath(location) if not isinstance(location, str) else location
    parts = urlsplit(text)
    if parts.scheme in _LOCAL_SCHEMES:
        path = parts.path if parts.scheme else text
        return "file://" + posixpath.normpath(os.path.abspath(os.path.expanduser(path)))
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def static_folder(template: str) -> str | None:
    """The folder of a templated path before its first Jinja expression, or None when it has none
    (``s3://b/out/{{ ds }}/x`` -> ``s3://b/out``; ``/data/run-{{ ds }}`` -> ``/data``; ``{{ x }}`` -> None)."""
    cut = min((i for i in (template.find(o) for o in _JINJA_OPENERS) if i >= 0), default=len(template))
    head = template[:cut]
    if cut < len(template):
        head = head.rsplit("/", 1)[0] if "/" in head else ""  # drop the partly templated segment
    head = head.rstrip("/")
    parts = urlsplit(head)
    if not head or (parts.scheme and not (parts.netloc or parts.path.strip("/"))):
        return None
    return head


def is_templated(text: str) -> bool:
    return any(o in text for o in _JINJA_OPENERS)


def default_asset_uri(output_path: Any, base: str | None, dag_id: str, task_key: str) -> str:
    """The stable asset URI of a task's output (see the module docstring).

    :param output_path: the operator's ``output_path`` as given (a template, a path, or None).
    :param base: ``[batch_provider] base_path`` (only read when ``output_path`` is None).
    :param task_key: the task id (a sharded job: its group id, which names the job folder).
    """
    from airflow_batch_provider.operators.batch import _segment

    if output_path is None:
        return location_uri("/".join([str(base).rstrip("/"), _segment(dag_id), _segment(task_key)]))
    text = output_path if isinstance(output_path, str) else os.fspath(output_path)
    if not is_templated(text):
        return location_uri(text)
    folder = static_folder(text)
    if folder is not None:
        return location_uri(folder)
    return f"{RUN_TIME_SCHEME}://{quote(dag_id, safe='')}/{quote(task_key, safe='')}"


def resolve_asset(asset: Any, *, output_path: Any, dag_id: str | None, task_key: str) -> Any:
    """The ``Asset`` a batch operator declares: ``asset`` as given (an ``Asset``, or a URI string), False for
    none, None for the default (needs the DAG: an operator outside a DAG declares none)."""
    from airflow.sdk import Asset

    if asset is False:
        return None
    if isinstance(asset, Asset):
        return asset
    if isinstance(asset, str):
        if not asset.strip():
            raise ValueError(f"{task_key}: asset is an empty string; give a URI, an Asset, or False for none")
        return Asset(uri=location_uri(asset))
    if asset is not None:
        raise TypeError(f"{task_key}: asset must be an Asset, a URI string, False or None, got {asset!r}")
    if dag_id is None:
        return None
    base = None
    if output_path is None:
        from airflow_batch_provider.operators.conf import base_path

        base = base_path()  # parse time: the outlet is part of the serialized DAG
    return Asset(uri=default_asset_uri(output_path, base, dag_id, task_key))


# -- what a finished job wrote ---------------------------------------------------------------------------
@dataclass
class JobOutput:
    """A finished job's folder, read lazily: manifest, report, input and output schemas."""

    folder: Any  # a path/URI string or an ObjectStoragePath (what storage_target() returns)
    summary: Mapping[str, Any]
    source: Any = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def uri(self) -> str:
        return str(self.summary.get("output_uri") or self.folder)

    def _location(self, *parts: str) -> Any:
        from airflow_batch_provider.storage import Location

        return Location.of(self.folder).child(*parts)

    def _read_json(self, name: str, *parts: str) -> Any:
        if name not in self._cache:
            self._cache[name] = self._location(*parts).read_json() or {}
        return self._cache[name]

    @property
    def manifest(self) -> dict[str, Any]:
        return self._read_json("manifest", "_manifest.json")

    @property
    def report(self) -> dict[str, Any]:
        """``_report.json``, the job's report (the summary inlines it only when small)."""
        inline = self.summary.get("report")
        return dict(inline) if isinstance(inline, Mapping) else self._read_json("report", "_report.json")

    @property
    def parts(self) -> list[str]:
        return [p for p in self.manifest.get("parts") or [] if isinstance(p, str) and ".." not in p]

    def output_schema(self) -> list[dict[str, str]] | None:
        """Column names and Arrow types of the output parts (from the first part's footer), None with no parts."""
        if "output_schema" not in self._cache:
            self._cache["output_schema"] = None
            if self.parts:
                import pyarrow.parquet as pq

                part = self._location(self.parts[0])
                with part.fs.open(part.path, "rb") as fh:
                    schema = pq.ParquetFile(fh).schema_arrow
                self._cache["output_schema"] = _fields(schema)
        return self._cache["output_schema"]

    def plan(self) -> dict[str, Any]:
        generation = int(self.summary.get("generation") or self.manifest.get("generation") or 1)
        return self._read_json("plan", f"g{generation:04d}", "plan.json")

    def input_schema(self) -> list[dict[str, str]] | None:
        """The source's columns and Arrow types, as the plan froze them."""
        text = self.plan().get("schema")
        if not text:
            return None
        from airflow_batch_provider.engine.checkpoints import schema_from_text

        return _fields(schema_from_text(text))

    def input_files(self) -> tuple[int, int]:
        """How many source files the plan read, and their bytes."""
        files = [f for f in self.plan().get("files") or [] if isinstance(f, Mapping)]
        return len(files), sum(int(f.get("size") or 0) for f in files)


def _fields(schema: Any) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in schema]


def asset_extra(job: JobOutput, map_index: int | None = None) -> dict[str, Any]:
    """The facts of one run for ``outlet_events[asset].extra``: JSON only, small (no report, no profile)."""
    summary = job.summary
    extra: dict[str, Any] = {
        "output_uri": job.uri,
        "report_uri": summary.get("report_uri") or job.uri.rstrip("/") + "/_report.json",
        "rows_in": summary.get("rows_in"),
        "rows_out": summary.get("rows_out"),
        "rows_quarantined": (summary.get("extra") or {}).get("rows_quarantined", 0),
        "chunks": summary.get("chunks_total"),
        "generation": summary.get("generation"),
        "fingerprint": summary.get("fingerprint"),
        "schema": job.output_schema() or job.input_schema(),
        "schema_of": "output" if job.output_schema() else "source",
    }
    report = job.report
    if isinstance(report.get("score"), (int, float)):
        extra["quality_score"] = report["score"]
        extra["rules_failed"] = report.get("rules_failed", 0)
    if map_index is not None and map_index >= 0:
        extra["map_index"] = map_index
    return extra


#: Airflow's limit on a partition key (the metadata DB's ID column)
MAX_PARTITION_KEY = 250


def partition_keys(value: Any) -> list[str]:
    """Rendered ``asset_partitions`` as a list of keys: None -> [], a string -> [it], a list -> its strings.

    :raises ValueError: a key that is not a string, is blank, or is longer than ``MAX_PARTITION_KEY``.
    """
    if value is None:
        return []
    keys = [value] if isinstance(value, str) else list(value)
    for key in keys:
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_PARTITION_KEY:
            raise ValueError(
                f"partition key {key!r} must be a non-blank string of at most {MAX_PARTITION_KEY} characters "
                "(a list of them, or one string; templates render to strings)"
            )
    return list(dict.fromkeys(keys))


def record_outlet_events(
    context: Mapping[str, Any],
    outlets: Iterable[Any],
    extra: Mapping[str, Any],
    partitions: Iterable[str] = (),
) -> int:
    """Put ``extra`` on the event of every concrete ``Asset`` among the task's outlets (keys the task already set
    are kept), with the ``partitions`` keys (``add_partitions``: one event per key). Returns how many assets got
    it (0 without an ``outlet_events`` context, e.g. ``op.execute({})``)."""
    from airflow.sdk import Asset

    keys = list(partitions)
    events = context.get("outlet_events")
    if events is None:
        return 0
    count = 0
    for outlet in outlets:
        if isinstance(outlet, Asset):
            event = events[outlet]
            for key, value in extra.items():
                event.extra.setdefault(key, value)
            if keys:
                event.add_partitions(keys)
            count += 1
    return count


# -- OpenLineage -----------------------------------------------------------------------------------------
def dataset_name(uri: str) -> tuple[str, str]:
    """OpenLineage's (namespace, name) of a storage URI, as the Airflow providers name them: ``file`` and the
    absolute path for local storage, ``scheme://bucket`` and the key for object storage."""
    parts = urlsplit(location_uri(uri))
    if parts.scheme == "file":
        return "file", parts.path or "/"
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/") or "/"


def source_uri(job: JobOutput) -> str:
    """The job's source as one dataset: the path/URI/glob given, or the stored copy of an in-memory frame."""
    source = job.source
    stored = getattr(source, "uri", None)
    if isinstance(stored, str):
        return stored
    if isinstance(source, (str, os.PathLike)) or hasattr(source, "protocol"):
        return str(source)
    return job.uri.rstrip("/") + "/_input"


def openlineage_facets(job: JobOutput, asset_uri: str | None) -> Any:
    """The ``OperatorLineage`` of a finished job: one input (the source) and one output (the asset, or the run's
    folder without one) dataset. Needs the ``openlineage`` extra."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import (
        dataset_version_dataset,
        output_statistics_output_dataset,
        schema_dataset,
    )

    in_facets: dict[str, Any] = {}
    if schema := job.input_schema():
        in_facets["schema"] = _schema_facet(schema_dataset, schema)
    report = job.report
    input_facets: dict[str, Any] = {}
    if metrics := quality_metrics_facet(job, report):
        input_facets["dataQualityMetrics"] = metrics
    if assertions := quality_assertions_facet(report):
        input_facets["dataQualityAssertions"] = assertions
    namespace, name = dataset_name(source_uri(job))
    source = InputDataset(namespace=namespace, name=name, facets=in_facets, inputFacets=input_facets)

    out_facets: dict[str, Any] = {
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=job.uri),
    }
    if schema := job.output_schema():
        out_facets["schema"] = _schema_facet(schema_dataset, schema)
    statistics = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
        rowCount=int(job.summary.get("rows_out") or 0), fileCount=len(job.parts)
    )
    namespace, name = dataset_name(asset_uri or job.uri)
    output = OutputDataset(
        namespace=namespace, name=name, facets=out_facets, outputFacets={"outputStatistics": statistics}
    )
    return OperatorLineage(inputs=[source], outputs=[output])


def _schema_facet(module: Any, fields: list[dict[str, str]]) -> Any:
    return module.SchemaDatasetFacet(
        fields=[module.SchemaDatasetFacetFields(name=f["name"], type=f["type"]) for f in fields]
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def quality_metrics_facet(job: JobOutput, report: Mapping[str, Any]) -> Any:
    """A profile (``data_profiling``'s report) as a ``DataQualityMetricsInputDatasetFacet``: row count, files
    and bytes read, and per column nulls, distinct, count, numeric min/max and quantiles. A quality report
    gives the row count only; other reports none."""
    columns = report.get("columns")
    is_profile = isinstance(columns, Mapping)
    if not is_profile and not isinstance(report.get("rules"), list):
        return None
    from openlineage.client.facet_v2 import data_quality_metrics_input_dataset as dqm

    metrics: dict[str, Any] = {}
    for name, col in (columns or {}).items():
        if not isinstance(col, Mapping):
            continue
        given = col.get("quantiles")
        quantiles: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
        metrics[str(name)] = dqm.ColumnMetrics(
            nullCount=col.get("nulls"),
            distinctCount=col.get("distinct"),
            count=_number(col.get("count")),
            min=_number(col.get("min")),
            max=_number(col.get("max")),
            quantiles={str(q): float(v) for q, v in quantiles.items() if _number(v) is not None},
        )
    files, size = job.input_files()
    return dqm.DataQualityMetricsInputDatasetFacet(
        columnMetrics=metrics,
        rowCount=report.get("rows"),
        fileCount=files or None,
        bytes=size or None,
    )


def quality_assertions_facet(report: Mapping[str, Any]) -> Any:
    """The rules of a ``data_quality`` report as a ``DataQualityAssertionsDatasetFacet``: one assertion per rule
    (its type, name, severity, pass/fail, threshold and failure ratio), None for other reports."""
    rules = report.get("rules")
    if not isinstance(rules, list) or "score" not in report:
        return None
    from openlineage.client.facet_v2 import data_quality_assertions_dataset as dqa

    assertions = []
    for rule in rules:
        if not isinstance(rule, Mapping):
            continue
        columns = [str(c) for c in rule.get("columns") or []]
        assertions.append(
            dqa.Assertion(
                assertion=str(rule.get("type")),
                success=bool(rule.get("passed")),
                column=columns[0] if len(columns) == 1 else None,
                severity=rule.get("severity"),
                name=rule.get("name"),
                expected=None if rule.get("threshold") is None else str(rule.get("threshold")),
                actual=None if rule.get("failure_ratio") is None else str(rule.get("failure_ratio")),
                params={"columns": columns, "evaluated": rule.get("evaluated"), "failed": rule.get("failed")},
            )
        )
    return dqa.DataQualityAssertionsDatasetFacet(assertions=assertions)

"""The provider's settings: the one place that knows their names and defaults.

Every option lives in Airflow's ``[batch_provider]`` section (``airflow.cfg``, or the environment variable
``AIRFLOW__BATCH_PROVIDER__<NAME>`` that Airflow itself honours). Two readers, one table:

* the engine, which imports nothing from Airflow, reads explicit arguments and those environment variables
  only (:func:`engine_setting`, :func:`engine_base_path`);
* operators, the CLI and the dashboard plugin read Airflow's configuration, which includes the same
  variables and ``airflow.cfg`` (``airflow_batch_provider.operators.conf``).

The pre-1.0 variable ``AIRFLOW_BATCH_PROVIDER_BASE_PATH`` still works for one release, with a
``DeprecationWarning`` naming it; when ``[batch_provider] base_path`` is set as well, that one wins.
No Airflow imports here.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SECTION = "batch_provider"
#: deprecated: use ``AIRFLOW__BATCH_PROVIDER__BASE_PATH`` or ``[batch_provider] base_path``
LEGACY_BASE_PATH_ENV = "AIRFLOW_BATCH_PROVIDER_BASE_PATH"
#: the records folder under the base path (failure records, alerts, heartbeats)
RECORDS_FOLDER = "_records"


@dataclass(frozen=True)
class Option:
    name: str
    type: str  # Airflow's provider-config types: string, integer, float, boolean
    default: str
    description: str
    example: str

    @property
    def env_var(self) -> str:
        return f"AIRFLOW__{SECTION.upper()}__{self.name.upper()}"


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            "base_path",
            "string",
            "",
            "Base path (local path or object storage URI such as s3://conn_id@bucket/prefix) for job outputs, "
            "checkpoints, quarantine and the _records folder. Empty: $AIRFLOW_HOME/batch_provider. Every task "
            "writes under {base_path}/{dag_id}/{run_id}/{task_id}/{map_index}/ unless it sets output_path.",
            "s3://aws_default@my-bucket/batch",
        ),
        Option(
            "conn_id",
            "string",
            "",
            "Airflow connection used for base_path (jobs, records, the dashboard and the CLI) when the URI "
            "names none.",
            "aws_default",
        ),
        Option(
            "default_batch_size",
            "integer",
            "0",
            "Rows per chunk when a job sets no batch_size. 0: sized automatically from a data sample "
            "(auto_optimize).",
            "100000",
        ),
        Option(
            "shared_storage",
            "boolean",
            "False",
            "Declare that a local base_path (or a local output_path/source of a sharded job) is a mount every "
            "worker shares. Without it, a sharded job with local storage fails fast on executors whose "
            "workers may sit on other hosts (anything but LocalExecutor).",
            "True",
        ),
        Option(
            "progress_interval",
            "float",
            "5",
            "Seconds between progress lines in the task log and updates of the task_state_store 'progress' "
            "key.",
            "5",
        ),
        Option(
            "log_row_values",
            "boolean",
            "False",
            "For debugging only: let task logs and raised exceptions show the row values that parse, conversion "
            "and processor errors quote. Off: they show each value's kind and length (<text:16>) and its "
            "position instead. Failure records are scrubbed either way.",
            "False",
        ),
        Option(
            "allowed_output_roots",
            "string",
            "",
            "Comma-separated folders or URIs, besides base_path, under which an explicit output_path (templated, "
            "so run conf can set it) may point. Outside them the operator warns, or refuses when "
            "enforce_output_roots is set; allow_any_output_path=True in DAG code lifts the rule for one task.",
            "s3://aws_default@exports/batch,/data/shared/batch",
        ),
        Option(
            "enforce_output_roots",
            "boolean",
            "False",
            "Refuse (BatchInputFailure, no retry) an output_path outside base_path and allowed_output_roots "
            "instead of warning. Off in this release; on by default in the next.",
            "True",
        ),
        Option(
            "allowed_source_roots",
            "string",
            "",
            "Comma-separated folders or URIs a job's source (templated, so run conf can set it) must lie under. "
            "Empty: no restriction.",
            "s3://aws_default@lake/raw,/data/incoming",
        ),
    )
}


def option(name: str) -> Option:
    try:
        return OPTIONS[name]
    except KeyError:
        raise KeyError(f"[{SECTION}] has no option {name!r}; options: {', '.join(OPTIONS)}") from None


def provider_config() -> dict[str, Any]:
    """The ``config`` part of ``get_provider_info()``, built from :data:`OPTIONS`."""
    return {
        SECTION: {
            "description": "Where batch jobs keep outputs, checkpoints and records, and their defaults.",
            "options": {
                o.name: {
                    "description": o.description,
                    "version_added": "0.1.0",
                    "type": o.type,
                    "example": o.example,
                    "default": o.default,
                }
                for o in OPTIONS.values()
            },
        }
    }


def legacy_base_path(configured: str = "") -> str:
    """``$AIRFLOW_BATCH_PROVIDER_BASE_PATH`` when set, with a deprecation warning; ``""`` otherwise or when
    ``configured`` (the new setting's value) is set, which wins."""
    value = os.environ.get(LEGACY_BASE_PATH_ENV, "")
    if not value:
        return ""
    new = OPTIONS["base_path"].env_var
    if configured:
        if value != configured:
            _deprecated(f"{LEGACY_BASE_PATH_ENV}={value!r} is ignored: [{SECTION}] base_path ({new}) is set")
        return ""
    _deprecated(
        f"{LEGACY_BASE_PATH_ENV} is deprecated and will be removed; set {new} or [{SECTION}] base_path"
    )
    return value


def _deprecated(message: str) -> None:
    warnings.warn(message, DeprecationWarning, stacklevel=3)
    log.warning("%s", message)


def home_base_path() -> str:
    """``$AIRFLOW_HOME/batch_provider`` (``~/airflow/batch_provider``): the default when nothing is set."""
    return os.path.join(os.path.expanduser(os.environ.get("AIRFLOW_HOME") or "~/airflow"), "batch_provider")


def resolve_base_path(configured: str = "") -> str:
    """The base path from a configured value (Airflow conf or the environment), else the deprecated variable,
    else ``$AIRFLOW_HOME/batch_provider``."""
    legacy = legacy_base_path(configured)  # always looked at: it warns when it is set
    return configured or legacy or home_base_path()


def engine_setting(name: str) -> str:
    """An option as the engine sees it: ``AIRFLOW__BATCH_PROVIDER__<NAME>``, else its default."""
    opt = option(name)
    return os.environ.get(opt.env_var, "") or opt.default


def engine_base_path() -> str:
    """The base path as the engine sees it (no Airflow configuration file is read)."""
    return resolve_base_path(engine_setting("base_path"))

"""The provider's settings as operators, the CLI and the dashboard read them: Airflow's configuration
(``[batch_provider]`` in ``airflow.cfg`` or ``AIRFLOW__BATCH_PROVIDER__*``), names and defaults from
:mod:`airflow_batch_provider.settings`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow_batch_provider import settings

ENGINE_SCHEMES = {"", "file", "local", "memory"}  # opened by the engine through fsspec directly


def provider_setting(key: str, fallback: str | None = None) -> str:
    """``[batch_provider] key`` from Airflow's configuration, else ``fallback``, else the option's default."""
    from airflow.sdk import conf

    default = settings.option(key).default if fallback is None else fallback
    return conf.get(settings.SECTION, key, fallback=default) or default


def base_path() -> str:
    """``[batch_provider] base_path``, else the deprecated ``$AIRFLOW_BATCH_PROVIDER_BASE_PATH``, else
    ``$AIRFLOW_HOME/batch_provider``."""
    return settings.resolve_base_path(provider_setting("base_path"))


def conn_id(explicit: str | None = None) -> str | None:
    """``explicit``, else ``[batch_provider] conn_id``, else None."""
    return explicit or provider_setting("conn_id") or None


def provider_boolean(key: str) -> bool:
    """A boolean ``[batch_provider]`` option from Airflow's configuration, else its default."""
    from airflow.sdk import conf

    default = settings.option(key).default.strip().lower() == "true"
    return conf.getboolean(settings.SECTION, key, fallback=default)


def shared_storage() -> bool:
    return provider_boolean("shared_storage")


def apply_log_row_values() -> None:
    """Tell the engine (and the chunk workers it forks) whether logs may show row values:
    ``[batch_provider] log_row_values``. Set for the task's process, which runs one task."""
    from airflow_batch_provider.engine.redaction import configure_row_values

    configure_row_values(provider_boolean("log_row_values"))


def storage_target(uri: Any, conn_id: str | None = None) -> Any:
    """A plain path/URI for local and memory storage, an ``ObjectStoragePath`` for everything else."""
    if not isinstance(uri, str):
        return uri
    parts = urlsplit(uri)
    if not conn_id and "@" not in parts.netloc and parts.scheme in ENGINE_SCHEMES:
        return uri
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(uri, conn_id=conn_id or None)


def records_target(base: str | None = None, connection: str | None = None) -> Any:
    """``{base_path}/_records`` opened through the connection the jobs write with."""
    root = (base or base_path()).rstrip("/") + "/" + settings.RECORDS_FOLDER
    return storage_target(root, conn_id(connection))

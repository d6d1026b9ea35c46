"""Where a task may write and read when a templated field names the place.

``output_path`` and ``source`` are templated, so whoever triggers a run (``dag_run.conf``, the REST API, an
upstream XCom) can set them. An explicit ``output_path`` must lie under ``[batch_provider] base_path`` or one
of ``[batch_provider] allowed_output_roots``, unless the DAG author sets ``allow_any_output_path=True`` (not
templated). This release logs a warning (and a ``DeprecationWarning``) where the rule would refuse;
``[batch_provider] enforce_output_roots = True`` refuses now (``BatchInputFailure``, no retry) and will be the
default in the next release. ``[batch_provider] allowed_source_roots`` (empty: no restriction) confines
``source`` the same way, and refuses.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from airflow_batch_provider.engine.paths import split_roots, within_any
from airflow_batch_provider.operators.conf import base_path, provider_boolean, provider_setting

log = logging.getLogger(__name__)


def output_roots() -> list[str]:
    """``[batch_provider] base_path`` and ``allowed_output_roots``."""
    return [base_path(), *split_roots(provider_setting("allowed_output_roots"))]


def source_roots() -> list[str]:
    return split_roots(provider_setting("allowed_source_roots"))


def confined_output_path(
    output_path: Any, *, allow_any: bool = False, task: str = "", logger: Any = None
) -> str:
    """``output_path`` as text, once it is known to lie under an allowed root (or ``allow_any``).

    :raises BatchInputFailure: outside every root while ``[batch_provider] enforce_output_roots`` is set.
    """
    folder = str(output_path)
    if allow_any:
        return folder
    roots = output_roots()
    if within_any(folder, roots[:1], strict=True) or within_any(folder, roots[1:]):
        return folder  # a job folder inside the base path, or at or inside an allowed root
    message = (
        f"{task}: output_path {folder!r} is not under [batch_provider] base_path or allowed_output_roots "
        f"({', '.join(roots)}). output_path is templated, so whoever triggers the run could make the task write "
        "anywhere the worker can. Add the folder to [batch_provider] allowed_output_roots, or set "
        "allow_any_output_path=True on the operator in the DAG file"
    )
    if provider_boolean("enforce_output_roots"):
        from airflow_batch_provider.operators.batch import BatchInputFailure

        raise BatchInputFailure(message)
    message += (
        ". This release only warns; the next one refuses such a path (set [batch_provider] "
        "enforce_output_roots = True to refuse it now)"
    )
    (logger or log).warning("%s", message)
    warnings.warn(message, DeprecationWarning, stacklevel=2)
    return folder


def confined_source(source: Any, *, task: str = "") -> Any:
    """``source`` unchanged, once it is known to lie under ``[batch_provider] allowed_source_roots`` (when set).

    :raises BatchInputFailure: outside every allowed source root.
    """
    roots = source_roots()
    if not roots or within_any(source, roots):
        return source
    from airflow_batch_provider.operators.batch import BatchInputFailure

    raise BatchInputFailure(
        f"{task}: source {str(source)!r} is not under [batch_provider] allowed_source_roots ({', '.join(roots)}). "
        "source is templated, so whoever triggers the run could make the task read any file the worker can; "
        "add the folder to allowed_source_roots"
    )

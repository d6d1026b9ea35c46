"""``BatchFailureNotifier``: say where a batch job stopped and where it will resume, once per failure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_MESSAGE = "Batch job {{ ti.dag_id }}.{{ ti.task_id }} (run {{ ti.run_id }}, try {{ ti.try_number }})"
CONTEXT_KEY = "batch_failure_message"


class BatchFailureNotifier(BaseNotifier):
    """A failure/retry callback whose message gives the job's position, read from its job folder.

    ``on_failure_callback=BatchFailureNotifier(target=send)`` sends, e.g.::

        Batch job etl.enrich (run manual__2026-12-01, try 2): failed at 63% (chunk 53/84),
        5,300,000 rows kept; will resume from chunk 53

    The position comes from the latest ``_checkpoint.json`` in the job folder, not from the exception: after
    a SIGKILL the callback runs in the dag-processor with no exception. Airflow may run a callback twice;
    an exclusive-create marker ``gNNNN/_notified/try-<n>`` makes the second call send nothing.

    :param message: the message prefix (templated).
    :param target: where to deliver: a callable ``fn(text)``, or another notifier, called with the context
        plus ``batch_failure_message`` (e.g. ``SlackNotifier(text="{{ batch_failure_message }}")``).
        ``None`` logs the message at error level.
    :param output_path: the job folder (templated); default: the task's ``job_folder(context)``, then the
        ``checkpoint`` pointer in the task state store.
    :param conn_id: Airflow connection of the job folder; default the task's ``output_conn_id``, then
        ``[batch_provider] conn_id``.
    """

    template_fields: Sequence[str] = ("message", "output_path")

    def __init__(
        self,
        message: str = DEFAULT_MESSAGE,
        *,
        target: Callable[..., Any] | None = None,
        output_path: str | None = None,
        conn_id: str | None = None,
    ) -> None:
        super().__init__()
        self.message = message
        self.target = target
        self.output_path = output_path
        self.conn_id = conn_id

    def notify(self, context: Context) -> None:
        from airflow_batch_provider.engine.position import claim_notice, job_position

        folder = self._folder(context)
        if folder is None:
            self._deliver(context, f"{self.message}: failed; its job folder is unknown")
            return
        position = job_position(folder)
        ti = context.get("ti")
        try_number = getattr(ti, "try_number", None)
        key = f"try-{try_number}" if try_number is not None else f"at-{position.updated_at}"
        if not claim_notice(folder, position, key):
            self.log.info("failure of %s (%s) already notified", getattr(folder, "path", folder), key)
            return
        self._deliver(context, f"{self.message}: {position.describe()}")

    def _folder(self, context: Context) -> Any:
        from airflow_batch_provider.operators.conf import conn_id as resolve_conn_id
        from airflow_batch_provider.operators.conf import storage_target

        task = context.get("task")
        folder = self.output_path or self._task_folder(task, context) or self._stored_folder(context)
        if not folder:
            return None
        conn_id = resolve_conn_id(self.conn_id or getattr(task, "output_conn_id", None))
        return storage_target(str(folder), conn_id)

    def _task_folder(self, task: Any, context: Context) -> str | None:
        job_folder = getattr(task, "job_folder", None)
        if not callable(job_folder):
            return None
        try:
            return job_folder(context)
        except Exception:  # noqa: BLE001 - a callback must still say something
            self.log.warning("could not work out the job folder of %s", getattr(task, "task_id", task))
            return None

    @staticmethod
    def _stored_folder(context: Context) -> str | None:
        store = context.get("task_state_store")
        try:
            pointer = store.get("checkpoint") if store is not None else None
        except Exception:  # noqa: BLE001
            return None
        folder = pointer.get("output_uri") if isinstance(pointer, dict) else None
        return folder if isinstance(folder, str) else None

    def _deliver(self, context: Context, text: str) -> None:
        if self.target is None:
            self.log.error("%s", text)
        elif isinstance(self.target, BaseNotifier):
            self.target({**context, CONTEXT_KEY: text})
        else:
            self.target(text)

"""``BatchCleanupOperator``: scheduled retention of job outputs, checkpoints and failure records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_batch_provider.operators.batch import BatchInputFailure, base_path
from airflow_batch_provider.operators.conf import conn_id as resolve_conn_id

if TYPE_CHECKING:
    from airflow.sdk import Context


class BatchCleanupOperator(BaseOperator):
    """Delete old job outputs, old checkpoint/work files and old failure records under the base path.

    :param base_path: the folder holding the job folders (templated); default ``[batch_provider] base_path``.
        Empty or ``/`` is refused.
    :param output_retention_days: committed outputs (what downstream tasks read) older than this are deleted
        with their whole job folder.
    :param work_retention_days: checkpoints, segments, states, fit state, quarantine and failed or superseded
        generations older than this are deleted; the committed output stays.
    :param records_retention_days: failure records older than this are deleted.
    :param dry_run: list what would be deleted and delete nothing (templated, e.g. ``"{{ params.dry_run }}"``).
    :param live_grace_minutes: a generation whose checkpoint says running or finalizing and was updated
        within this many minutes is a live attempt: its job folder is not touched.
    :param conn_id: Airflow connection of the base path; default ``[batch_provider] conn_id``.

    Returns the summary (XCom): ``counts`` per kind, the ``deleted`` entries (uri, kind, reason; the first
    500), and ``skipped_live`` job folders. Nothing outside the base path is ever deleted; symlinks are not
    followed.
    """

    template_fields: Sequence[str] = ("base_path", "dry_run")
    ui_color = "#fee2e2"

    def __init__(
        self,
        *,
        base_path: str | None = None,
        output_retention_days: float = 30,
        work_retention_days: float = 7,
        records_retention_days: float = 30,
        dry_run: bool | str = False,
        live_grace_minutes: float = 60,
        conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.base_path = base_path
        self.output_retention_days = output_retention_days
        self.work_retention_days = work_retention_days
        self.records_retention_days = records_retention_days
        # shadows BaseOperator.dry_run() (render-only, which Airflow 3.3 never calls); kept: a public parameter
        self.dry_run = dry_run  # type: ignore[assignment,method-assign]
        self.live_grace_minutes = live_grace_minutes
        self.conn_id = conn_id

    def _dry_run(self) -> bool:
        if isinstance(self.dry_run, str):
            return self.dry_run.strip().lower() in ("1", "true", "yes", "on")
        return bool(self.dry_run)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_batch_provider.engine.retention import RetentionPolicy, apply_retention
        from airflow_batch_provider.exceptions import BatchInputError
        from airflow_batch_provider.operators.batch import storage_target

        base = self.base_path or base_path()
        try:
            policy = RetentionPolicy(
                output_days=float(self.output_retention_days),
                work_days=float(self.work_retention_days),
                records_days=float(self.records_retention_days),
                live_grace_s=float(self.live_grace_minutes) * 60,
            )
            target = storage_target(base, resolve_conn_id(self.conn_id))
            summary = apply_retention(target, policy, dry_run=self._dry_run())
        except (BatchInputError, ValueError) as err:
            raise BatchInputFailure(str(err)) from err
        counts = summary["counts"]
        self.log.info(
            "%s under %s: %d job outputs, %d work entries, %d failure records; %d live job folders left alone",
            "would delete" if summary["dry_run"] else "deleted",
            base,
            counts["output"],
            counts["work"],
            counts["records"],
            len(summary["skipped_live"]),
        )
        for entry in summary["deleted"][:50]:
            self.log.info("  %s %s (%s)", entry["kind"], entry["uri"], entry["reason"])
        return summary

"""``BatchAlertNotifier``: a templated Airflow notifier for batch alerts and task failures.

The only module of :mod:`airflow_batch_provider.monitoring` that imports Airflow.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow.sdk import BaseNotifier

DEFAULT_MESSAGE = (
    "{% if alert %}[{{ alert.level }}] {{ alert.title }} in {{ alert.job_id }}: {{ alert.message }}"
    "{% else %}batch task {{ ti.dag_id }}.{{ ti.task_id }} failed (try {{ ti.try_number }}): "
    "{{ exception }}{% endif %}"
)


class BatchAlertNotifier(BaseNotifier):
    """Send a rendered message about an :class:`~airflow_batch_provider.monitoring.alerts.Alert` or a failed
    task to ``target``.

    As a task callback (``on_failure_callback=BatchAlertNotifier(...)``) it renders ``message`` with the task
    context; for alerts, ``send_alert(alert, context)`` (or the callable from ``alert_callback(context)``,
    which fits ``alert_callbacks=[...]``) adds ``alert`` to the context first.

    :param message: a Jinja template (templated); ``alert`` and the Airflow context are available.
    :param target: where the message goes: another notifier (e.g. ``SlackNotifier(text="{{ batch_alert_message }}")``;
        it is called with the context plus ``batch_alert_message``), or a callable ``fn(text)`` (as for
        :class:`~airflow_batch_provider.notifications.failure.BatchFailureNotifier`).
        None: the task log only.
    """

    template_fields: Sequence[str] = ("message",)

    def __init__(
        self,
        message: str = DEFAULT_MESSAGE,
        target: BaseNotifier | Callable[[str], Any] | None = None,
    ) -> None:
        super().__init__()
        self.message = message
        self.target = target

    def notify(self, context: Any) -> None:
        context["batch_alert_message"] = self.message
        self.log.warning("batch alert: %s", self.message)
        if self.target is None:
            return
        if isinstance(self.target, BaseNotifier):
            copy.copy(self.target)(context)  # the target renders its own templates in place too
        else:
            self.target(self.message)

    def send_alert(self, alert: Any, context: Mapping[str, Any] | None = None) -> None:
        """Render ``message`` for ``alert`` and deliver it; the notifier itself is left unrendered."""
        ctx: dict[str, Any] = {**(context or {}), "alert": alert}
        ctx.setdefault("exception", None)
        try:
            copy.copy(self)(ctx)  # BaseNotifier renders template fields in place: render a copy each time
        except Exception:  # BaseNotifier logged it; an unreachable chat service must not fail the job
            self.log.warning("batch alert %r was not delivered", getattr(alert, "title", alert))

    def alert_callback(self, context: Mapping[str, Any] | None = None) -> Callable[[Any], None]:
        """A callable for ``alert_callbacks=[...]`` that sends each alert with ``context``."""
        return lambda alert: self.send_alert(alert, context)

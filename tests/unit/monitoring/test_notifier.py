"""BatchAlertNotifier: templated messages for alerts and failed tasks, delivered to a callable or a notifier."""

from __future__ import annotations

from types import SimpleNamespace

from airflow.sdk import BaseNotifier

from airflow_batch_provider.get_provider_info import get_provider_info
from airflow_batch_provider.monitoring import Alert
from airflow_batch_provider.notifications.alert import BatchAlertNotifier


class CollectingNotifier(BaseNotifier):
    """A notifier of our own standing in for SlackNotifier: it renders its own template."""

    template_fields = ("text",)

    def __init__(self, text, sink):
        super().__init__()
        self.text = text
        self.sink = sink

    def notify(self, context):
        self.sink.append(self.text)


def alert(title, value):
    return Alert(
        "warning", title, "too much", "memory_mb", value, 100.0, job_id="d/r/t/0", condition="memory"
    )


def test_each_alert_is_rendered_from_the_template_into_another_notifier():
    sink: list[str] = []
    notifier = BatchAlertNotifier(
        message="{{ alert.title }} {{ alert.value }} > {{ alert.threshold }} ({{ run }})",
        target=CollectingNotifier("slack: {{ batch_alert_message }}", sink),
    )
    send = notifier.alert_callback({"run": "r1"})
    send(alert("memory high", 150.0))
    send(alert("memory higher", 180.0))
    assert sink == ["slack: memory high 150.0 > 100.0 (r1)", "slack: memory higher 180.0 > 100.0 (r1)"]
    assert notifier.message.startswith("{{ alert.title }}")  # the template itself stays unrendered


def test_as_a_failure_callback_it_renders_the_task_context():
    got = []
    notifier = BatchAlertNotifier(target=got.append)
    ti = SimpleNamespace(dag_id="etl", task_id="enrich", try_number=2)
    notifier({"ti": ti, "exception": ValueError("bad chunk"), "alert": None})
    assert got == ["batch task etl.enrich failed (try 2): bad chunk"]


def test_a_failing_target_does_not_raise():
    def broken(message):
        raise RuntimeError("slack is down")

    BatchAlertNotifier(target=broken).send_alert(alert("x", 1.0))


def test_registered_in_provider_info():
    assert (
        "airflow_batch_provider.notifications.alert.BatchAlertNotifier"
        in get_provider_info()["notifications"]
    )


def test_the_old_module_paths_are_the_new_modules():
    import airflow_batch_provider.monitoring.notifier as old_alert
    import airflow_batch_provider.notifiers as old_failure
    from airflow_batch_provider.notifications import BatchFailureNotifier, alert, failure

    assert old_alert is alert and old_failure is failure
    assert (
        old_alert.BatchAlertNotifier is BatchAlertNotifier
        and old_failure.BatchFailureNotifier is BatchFailureNotifier
    )

"""A task context for ``op.execute(context)`` without an Airflow DB: a fake TI and a task_state_store."""

from __future__ import annotations

import json


class FakeTI:
    def __init__(self, run_id="manual__2026-11-28T10:00:00+00:00", task_id="job", map_index=-1, try_number=1):
        self.dag_id, self.run_id, self.task_id, self.map_index = "batch_dag", run_id, task_id, map_index
        self.try_number = try_number
        self.xcoms: list[tuple[str, object]] = []

    def xcom_push(self, key, value):
        self.xcoms.append((key, value))


class StateStore(dict):
    """The task_state_store API (get/set/delete/clear) over a dict; values must be JSON."""

    def set(self, key, value, *, retention=None):
        json.dumps(value)
        self[key] = value


def context(ti=None, store=None):
    return {"ti": ti or FakeTI(), "task_state_store": store if store is not None else StateStore()}

"""Keyword arguments of a batch operator: what goes to the processor, checked while the DAG file is parsed.

Every keyword argument that is not an operator argument is a processor parameter. Where the processor's
parameters are known without importing it (the built-in names, from the static table in
:mod:`~airflow_batch_provider.processors.catalog`), an unknown keyword fails when the DAG is parsed, naming the
closest operator argument or parameter (``retires`` -> ``retries``). Callables, classes and import paths are
checked against their signature when the task starts (``resolve_processor``). A name that is both an operator
argument and a parameter of the processor must be passed as ``processor_kwargs={...}`` to reach the processor.
Nothing here imports the processors, pandas or scikit-learn.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from functools import cache
from typing import Any

from airflow.sdk import BaseOperator

from airflow_batch_provider.exceptions import ProcessorParameterError
from airflow_batch_provider.processors import catalog

#: set by Airflow's ``apply_defaults``, never by the user
_INJECTED = frozenset({"dag", "task_group", "default_args"})


@cache
def operator_arguments(cls: type) -> frozenset[str]:
    """The keyword arguments named by the ``__init__`` of ``cls`` and its bases, down to ``BaseOperator``."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            params = inspect.signature(init).parameters.values()
            names |= {
                p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            }
        if klass is BaseOperator:
            break
    return frozenset(names)


@cache
def _defaults(cls: type) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters.values()  # type: ignore[misc] # a class, not an instance
    return {p.name: p.default for p in params if p.default is not p.empty}


def given_arguments(cls: type, values: Mapping[str, Any]) -> set[str]:
    """The named arguments of ``cls.__init__`` in ``values`` (its ``locals()``) that differ from their default."""
    defaults = _defaults(cls)
    return {k for k, v in values.items() if k in defaults and v is not defaults[k]}


def _registered_by_user(name: str) -> bool:
    registry = sys.modules.get("airflow_batch_provider.processors.registry")  # never imported from here
    return registry is not None and name in getattr(registry, "_REGISTRY", {})


def _parameters(processor: Any) -> tuple[frozenset[str], bool] | None:
    """The processor's keyword parameters and whether it takes any keyword, when known without importing it."""
    if isinstance(processor, str):
        declared = None if _registered_by_user(processor) else catalog.declared_parameters(processor)
        return None if declared is None else (frozenset(declared), False)
    if callable(processor):  # a class or function object from the DAG file: its signature is at hand
        return catalog.keyword_parameters(processor)
    return None


def check_processor_keywords(
    operator: Any,
    base: type,
    extra: Mapping[str, Any],
    explicit: Mapping[str, Any],
    given: set[str],
) -> None:
    """Raise :class:`ProcessorParameterError` (the DAG fails to import) for keywords that cannot be right.

    :param operator: the operator being built (``processor`` and ``task_id`` are set).
    :param base: ``BatchJobOperator``: its arguments and ``BaseOperator``'s are the operator arguments that a
        processor parameter could be mistaken for (a subclass's own arguments feed its processor on purpose).
    :param extra: the keyword arguments that are not operator arguments.
    :param explicit: ``processor_kwargs``.
    :param given: the operator arguments the DAG file gave.
    """
    known = _parameters(operator.processor)
    if known is None:
        return  # an import path or a registered name: checked against the signature when the task starts
    params, any_keyword = known
    where = f"{type(operator).__name__}(task_id={operator.task_id!r})"
    label = operator.processor if isinstance(operator.processor, str) else _name(operator.processor)
    if isinstance(operator.processor, str) and not any_keyword:
        unknown = sorted((set(extra) | set(explicit)) - params)
        if unknown:
            candidates = params | operator_arguments(type(operator))  # type: ignore[arg-type] # classes hash
            raise ProcessorParameterError(
                f"{where}: unknown keyword argument {unknown[0]!r} (neither an operator argument nor a parameter "
                f"of processor {label!r}, which takes {sorted(params) or 'no parameters'})"
                f"{catalog.did_you_mean(unknown[0], candidates)}"
            )
    both = sorted((params & operator_arguments(base) & (given - _INJECTED)) - set(explicit))
    if both:
        raise ProcessorParameterError(
            f"{where}: {both[0]!r} is both an operator argument and a parameter of processor {label}, so it "
            f"went to the operator. To give it to the processor, pass processor_kwargs={{{both[0]!r}: ...}} "
            "(the operator keeps its own value)"
        )


def _name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"

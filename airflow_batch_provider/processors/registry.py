"""Processor registry: names -> processor classes or callables, plus third-party entry points.

A name resolves to, in order: a processor registered with :func:`register_processor`, a built-in (the static
table in :mod:`~airflow_batch_provider.processors.catalog`: only that one module is imported, so ``"count"``
never loads the standard processors), an entry point of the ``airflow_batch_provider.processors`` group
(``name = "package.module:attr"``), or an import path. No Airflow imports here.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from airflow_batch_provider.exceptions import ProcessorNotFoundError, ProcessorParameterError
from airflow_batch_provider.processors import catalog
from airflow_batch_provider.processors.base import BaseProcessor, CallableProcessor
from airflow_batch_provider.processors.frames import check_input_format

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "airflow_batch_provider.processors"
_REGISTRY: dict[str, Any] = {}  # registered names (and loaded entry points); built-ins live in the catalog
_entry_points_loaded = False


def register_processor(
    name: str,
    processor: Any = None,
    *,
    replace: bool = False,
    chunk_invariant: bool | None = None,
    input_format: str | None = None,
) -> Any:
    """Register a processor class or a (sync or ``async``) callable under ``name``.

    Usable as a decorator: ``@register_processor("clean")`` on a function or class.

    :param chunk_invariant: True declares that results do not depend on how rows are split into chunks,
        which lets ``auto_optimize`` resize chunks while the job runs (sets the ``chunk_invariant``
        attribute of the function or class; None leaves it as it is).
    :param input_format: the frame the function or class is given: ``"pandas"`` (default), ``"arrow"`` (a
        ``pyarrow.Table``) or ``"polars"`` (a ``polars.DataFrame`` from Arrow, no pandas copy); sets the
        ``input_format`` attribute (None leaves it as it is).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("register_processor: name must be a non-empty string")
    if input_format is not None:
        check_input_format(input_format, f"register_processor({name!r}): input_format")

    def _register(obj: Any) -> Any:
        if not (inspect.isclass(obj) or callable(obj)):
            raise TypeError(f"register_processor({name!r}): expected a class or a callable, got {obj!r}")
        if name in _REGISTRY and _REGISTRY[name] is not obj and not replace:
            raise ValueError(f"processor {name!r} is already registered; pass replace=True to override it")
        if name not in _REGISTRY and name in catalog.BUILTIN and not replace:
            if _builtin(name) is not obj:
                raise ValueError(f"processor {name!r} is a built-in; pass replace=True to override it")
        if chunk_invariant is not None:
            obj.chunk_invariant = bool(chunk_invariant)
        if input_format is not None:
            obj.input_format = input_format
        _REGISTRY[name] = obj
        return obj

    return _register if processor is None else _register(processor)


def unregister_processor(name: str) -> None:
    _REGISTRY.pop(name, None)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY or ep.name in catalog.BUILTIN:
            continue
        try:
            _REGISTRY[ep.name] = ep.load()
        except Exception:  # a broken third-party package must not break every job
            log.exception("could not load processor entry point %s = %s", ep.name, ep.value)


def registered_processors() -> list[str]:
    _load_entry_points()
    return sorted(set(_REGISTRY) | set(catalog.BUILTIN))


def _builtin(name: str) -> Any:
    """The built-in processor class ``name`` (imports its module only)."""
    return import_object(catalog.BUILTIN[name].path)


def import_object(spec: str) -> Any:
    """Import ``"package.module:attr"`` (or ``"package.module.attr"``); raises ImportError, AttributeError or
    ValueError."""
    module_name, _, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _import_path(spec: str) -> Any:
    try:
        return import_object(spec)
    except (ImportError, AttributeError, ValueError) as err:
        raise ProcessorNotFoundError(
            f"processor {spec!r} could not be imported ({err}); give a registered name "
            f"({', '.join(registered_processors()) or 'none registered'}) or an importable 'module:attr' path"
        ) from err


def lookup(spec: str) -> Any:
    if spec in _REGISTRY:
        return _REGISTRY[spec]
    if spec in catalog.BUILTIN:
        return _builtin(spec)
    _load_entry_points()
    if spec in _REGISTRY:
        return _REGISTRY[spec]
    if "." in spec or ":" in spec:
        return _import_path(spec)
    close = difflib.get_close_matches(spec, registered_processors(), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ProcessorNotFoundError(
        f"processor {spec!r} is not registered; {hint}registered: {', '.join(registered_processors())}. "
        "Register it with airflow_batch_provider.register_processor(name, fn_or_class), the "
        f"'{ENTRY_POINT_GROUP}' entry-point group, or pass an import path 'module:attr'"
    )


def resolve_processor(
    spec: Any, params: Mapping[str, Any] | None = None, *, input_format: str | None = None
) -> BaseProcessor:
    """Turn a name, import path, class, instance or callable into a processor instance.

    Keywords are checked against the class's or the callable's signature first (callables taking ``**kwargs``
    accept any): a mismatch raises :class:`ProcessorParameterError` (a ``BatchInputError``) before any chunk.
    ``input_format`` (``"pandas"``, ``"arrow"``, ``"polars"``) sets the frame a callable is given; a processor
    class or instance declares its own (``input_format`` class attribute), which this overrides when given.
    """
    if input_format is not None:
        check_input_format(input_format)
    processor = _resolve(spec, params, input_format)
    if input_format is not None and not isinstance(processor, CallableProcessor):
        processor.input_format = input_format
    return processor


def _resolve(spec: Any, params: Mapping[str, Any] | None, input_format: str | None) -> BaseProcessor:
    params = dict(params or {})
    label = spec if isinstance(spec, str) else None
    obj = lookup(spec) if isinstance(spec, str) else spec
    if inspect.isclass(obj):
        catalog.check_keywords(obj, params, label or obj.__name__)
        try:
            return obj(**params)  # type: ignore[return-value]
        except TypeError as err:
            raise TypeError(
                f"processor {label or obj.__name__}: bad parameters {sorted(params)}: {err}"
            ) from err
    if isinstance(obj, BaseProcessor) or (hasattr(obj, "process") and not _is_plain_function(obj)):
        if params:
            raise ProcessorParameterError(
                f"processor {obj!r} is already an instance; pass its parameters to its constructor, "
                f"not as keyword arguments ({sorted(params)})"
            )
        return obj
    if callable(obj):
        processor = CallableProcessor(obj, params, name=label, input_format=input_format)
        catalog.check_keywords(obj, params, processor.label)
        return processor
    raise ProcessorNotFoundError(f"{spec!r} is not a processor: expected a name, class, instance or callable")


def _is_plain_function(obj: Callable[..., Any]) -> bool:
    return inspect.isfunction(obj) or inspect.ismethod(obj)

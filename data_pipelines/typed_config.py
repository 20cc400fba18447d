"""Typed configuration machinery: frozen dataclasses to and from dicts and YAML, dotted overrides.

Generic over any typed config dataclass: the data pipeline's :class:`~data_pipelines.config.PrepareConfig`,
the codec's and training run's :class:`~biocodec_jax.config.Config` (which re-exports these), the
evaluation's ``EvalConfig``. It lives in the lowest layer so that every layer can use it without
importing the one above (``data_pipelines`` does not import ``biocodec_jax``).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from data_pipelines import paths


def to_dict(config: Any) -> dict:
    """A JSON/YAML-ready nested dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):  # "float | None" and the like
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(annotation)):
            return None
        if len(options) == 1:
            return _coerce(value, options[0], where)
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a mapping, got {value!r}")
        return _from_dict(annotation, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(annotation)
        item_type = args[0] if args else Any
        return tuple(_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ValueError(f"{where}: {value!r} is not one of {list(choices)}")
        return value
    if annotation is float:
        # YAML 1.1 reads "3e-4" (no dot) as a string: accept numeric strings.
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{where}: expected a number, got {value!r}") from None
    if annotation is int:
        try:
            if isinstance(value, bool) or not float(value).is_integer():
                raise ValueError
            return int(float(value))
        except (TypeError, ValueError):
            raise TypeError(f"{where}: expected an integer, got {value!r}") from None
    if annotation is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected true/false, got {value!r}")
        return value
    if annotation is str:
        return str(value)
    return value


def _from_dict(cls: type, data: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise KeyError(f"{where or 'config'}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def dataclass_from_dict(cls: type, data: dict) -> Any:
    """An instance of the (frozen, typed) dataclass ``cls`` from ``data``, types checked and coerced."""
    return _from_dict(cls, data, "")


def apply_overrides(config: Any, overrides: list[str] | tuple[str, ...]) -> Any:
    """Apply ``section.key=value`` overrides (values parsed as YAML: ``3``, ``1e-4``, ``[2,2]``).

    Works for any typed config dataclass (``biocodec_jax.config.Config``, the data pipeline's
    ``PrepareConfig``); the result has the type of ``config``.
    """
    data = to_dict(config)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        node = data
        *parents, leaf = key.strip().split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                raise KeyError(f"override {item!r}: no section {p!r}")
            node = node[p]
        if leaf not in node:
            raise KeyError(f"override {item!r}: unknown key {key!r}")
        node[leaf] = yaml.safe_load(raw)
    return _from_dict(type(config), data, "")


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (JSON if the suffix is ``.json``) to ``path``, a local path or
    a ``gs://`` URL, whole (a reader sees the old file or the new one, never a part)."""
    data = to_dict(config)
    text = json.dumps(data, indent=2) + "\n" if str(path).endswith(".json") else yaml.safe_dump(data, sort_keys=False)
    paths.write_text(path, text)

"""Typed configuration: dataclasses loaded from YAML, overridable from the command line.

``load_config(TrainConfig, "cfg.yaml", ["optim.lr=3e-4", "data.root=/data"])``
builds the nested dataclasses, rejects unknown keys (naming the file and the
key), keys a class refuses (its ``REFUSED_KEYS``: key -> why), values of the
wrong type and, for a ``Literal`` field, values it does not list. Override
values are parsed as YAML (``3e-4``, ``true``, ``[V, F]``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

#: the largest seed: Lightning's seed_everything (NumPy's legacy seeding) takes 0 .. 2**32 - 1
MAX_SEED = 2**32 - 1


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


def check_range(
    section: str, name: str, value, low=None, high=None, low_open: bool = False, high_open: bool = False
) -> None:
    """Raise ``ValueError("optim.epochs must be >= 1, got -1")`` when ``value`` is outside the range.

    For the config dataclasses' ``__post_init__``; :func:`from_dict` prefixes the file name."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{section}.{name} must be a finite number, got {value}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        bounds = [
            f"{'>' if low_open else '>='} {low}" if low is not None else "",
            f"{'<' if high_open else '<='} {high}" if high is not None else "",
        ]
        raise ValueError(f"{section}.{name} must be {' and '.join(b for b in bounds if b)}, got {value}")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is typing.Literal:
        # type as well as value: YAML's true is not the 1 of Literal[1, 3]
        if not any(type(value) is type(option) and value == option for option in args):
            allowed = ", ".join(repr(option) if option == "" else str(option) for option in args)
            raise ConfigError(f"{where} must be one of {allowed}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_type, value_type = args or (Any, Any)
        return {_coerce(k, key_type, where): _coerce(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected float, got {value!r}") from None
    if annotation is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if (
        isinstance(annotation, type)
        and not isinstance(value, annotation)
        or (annotation is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")
    return value


def from_dict(cls: type[T], raw: dict, where: str = "config") -> T:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    refused = getattr(cls, "REFUSED_KEYS", {})
    for key in raw:
        if key in refused:
            raise ConfigError(f"{where}.{key}: {refused[key]}; remove it")
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in raw.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(_located(where, str(error))) from None


def _located(where: str, message: str) -> str:
    """``"cfg.yaml.optim"`` + ``"optim.epochs must ..."`` -> ``"cfg.yaml: optim.epochs must ..."``
    (the message names the full key already)."""
    parts = where.split(".")
    for i in range(1, len(parts)):
        if message.startswith(".".join(parts[i:]) + "."):
            return f"{'.'.join(parts[:i])}: {message}"
    return f"{where}: {message}"


def apply_override(raw: dict, override: str) -> None:
    """``"optim.lr=3e-4"`` -> ``raw["optim"]["lr"] = 3e-4`` (value parsed as YAML)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.subkey=value")
    key, text = override.split("=", 1)
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"override {override!r}: the value is not valid YAML ({_yaml_problem(error)})") from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """``line 3, column 7: mapping values are not allowed here`` (1-based, as editors count)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; a syntax error is a one-line :class:`ConfigError` naming file and line."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML at {_yaml_problem(error)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (invalid UTF-8)") from None


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] = ()) -> T:
    raw: dict = {}
    where = "config"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        raw = read_yaml(path) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        where = str(path)
    for override in overrides:
        apply_override(raw, override)
    return from_dict(cls, raw, where)


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def flatten(tree: dict, prefix: str = "") -> dict:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}`` (an empty mapping stays a value)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def save_config(config: Any, path: str | Path) -> None:
    from karmma.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))

"""params.yaml -> typed, frozen config objects.

Each stage reads only the sections it declares in dvc.yaml. Building a dataclass from a mapping
is strict: an unknown key or a missing key is an error that names the full key path, never a
silent default. The dataclasses themselves live next to the code they configure (mostly in
`beep3d`); this module only knows how to fill them from YAML.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A params file does not match the config it should fill."""


class ParamsLoader(yaml.SafeLoader):
    """YAML read as DVC reads and writes params.yaml (YAML 1.2): only true / false are booleans.

    PyYAML follows YAML 1.1, where an unquoted on / off / yes / no is a boolean as well. DVC
    (ruamel, YAML 1.2) reads `amp: off` as the string 'off', and `dvc exp run -S` rewrites
    params.yaml with such strings unquoted, so with PyYAML's rules a stage would see false (and
    log 'False' to MLflow) where DVC and the user have 'off'.
    """


ParamsLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_yaml(text: str) -> Any:
    """A params text (a file's, or a `-S key=value` value) read by `ParamsLoader`."""
    return yaml.load(text, Loader=ParamsLoader)  # a SafeLoader: no arbitrary objects


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    try:
        params = parse_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: not found") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return params


def section(params: dict[str, Any], key: str) -> Any:
    """params[key] for a dotted key ('data.synthetic'), with the missing part named."""
    node: Any = params
    for i, part in enumerate(key.split(".")):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"params: missing key '{'.'.join(key.split('.')[: i + 1])}'")
        node = node[part]
    return node


def build(cls: type[T], data: Any, where: str) -> T:
    """Fill dataclass `cls` from `data`, checking keys and types; `where` is the key path."""
    if not isinstance(data, dict):
        raise ConfigError(f"params: '{where}' must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"params: unknown key(s) {', '.join(where + '.' + k for k in unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name in fields:
        if name not in data:
            raise ConfigError(f"params: missing key '{where}.{name}'")
        kwargs[name] = _coerce(hints[name], data[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:  # a config's own validation (__post_init__)
        raise ConfigError(f"params: '{where}': {err}") from err


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in args:
            if arm is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(arm, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"params: '{where}' must not be null")
    if origin is typing.Literal:
        # load_params reads an unquoted `off` as 'off' (ParamsLoader), but a params file that
        # went through PyYAML's safe_load / safe_dump (scripts, tests) holds `false` instead:
        # where "off" is a choice, false means it.
        if value is False and "off" in args:
            value = "off"
        if value not in args:
            raise ConfigError(f"params: '{where}' must be one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"params: '{where}' must be a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"params: '{where}' must be a number, got {value!r}")
        return float(value)
    if tp is int or tp is bool or tp is str:
        if type(value) is not tp:
            raise ConfigError(f"params: '{where}' must be {tp.__name__}, got {value!r}")
        return value
    raise ConfigError(f"params: '{where}' has unsupported type {tp}")


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}: for logging and for diffing against defaults."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out

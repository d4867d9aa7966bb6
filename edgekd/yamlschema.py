"""YAML files as validated data: safe parsing, schema validation, errors with file and line.

``load_yaml(path)`` returns plain data plus a map from key paths to line numbers, so a
schema error can say ``recipes/x.yaml:12: stages[1].epochs: ...``.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edgekd.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)
Lines = dict[tuple, int]


def load_yaml(path: str | Path) -> tuple[Any, Lines]:
    """Parse a YAML file with ``yaml.safe_load`` rules; map each key path to its 1-based line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read as text ({exc})") from None
    return parse_yaml(text, source=str(path))


def parse_yaml(text: str, *, source: str) -> tuple[Any, Lines]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}{line}: not valid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply") from None
    lines: Lines = {}
    if node is not None:
        collect_lines(node, (), lines)
    return data, lines


def collect_lines(node: yaml.Node, path: tuple, lines: Lines) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            k = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
            lines[path + (k,)] = key.start_mark.line + 1
            collect_lines(value, path + (k,), lines)
            lines[path + (k,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            collect_lines(item, path + (i,), lines)


def line_of(lines: Lines, path: tuple) -> int | None:
    """The line of the deepest known prefix of ``path``."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def format_path(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validate(schema: type[Model], data: Any, *, source: str, lines: Lines, prefix: tuple = ()) -> Model:
    """Validate ``data`` against ``schema``; the first error becomes one ConfigError line."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, schema, source=source, lines=lines, prefix=prefix) from None


def config_error(exc: ValidationError, schema: type[BaseModel], *, source: str, lines: Lines,
                 prefix: tuple = ()) -> ConfigError:
    err = exc.errors()[0]
    path = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    line = line_of(lines, path)
    where = f"{source}:{line}" if line else source
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(allowed_keys(schema, err["loc"][:-1]))
        message = f"unknown key '{path[-1]}'" + (f" (allowed here: {allowed})" if allowed else "")
    else:
        message = err["msg"]
    more = f" (and {len(exc.errors()) - 1} more errors)" if len(exc.errors()) > 1 else ""
    return ConfigError(f"{where}: {format_path(path)}: {message}{more}")


def allowed_keys(schema: type[BaseModel], loc: tuple) -> list[str]:
    """The keys ``schema`` accepts at ``loc`` (for "unknown key" messages)."""
    cls: Any = schema
    for part in loc:
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(part) if isinstance(cls, type) and issubclass(cls, BaseModel) else None
        if field is None:
            return []
        candidates = (field.annotation, *typing.get_args(field.annotation))
        cls = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if cls is None:
            return []
    return sorted(cls.model_fields) if isinstance(cls, type) and issubclass(cls, BaseModel) else []

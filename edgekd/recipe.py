"""Recipes: which stages run, with which settings, on which data. YAML in ``recipes/``.

A recipe file is validated in full before anything runs; an unknown key, a wrong type or
an unknown stage name is one error line with the file and line number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgekd.builtin import builtin_dir, builtin_names
from edgekd.data import DataSpec
from edgekd.errors import ConfigError, UnknownNameError
from edgekd.stages import STAGES, Stage, check_order, stage_class
from edgekd.stages.base import StageOrderError
from edgekd.yamlschema import Lines, line_of, load_yaml, validate


class Recipe(BaseModel):
    """A named list of stages and the data they run on."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    name: str = "custom"
    description: str = ""
    data: DataSpec = DataSpec()
    stages: tuple[Stage, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _stages_in_order(self) -> "Recipe":
        check_order(self.stages)
        return self

    def with_stage(self, name: str, **changes: Any) -> "Recipe":
        """A copy with every stage called ``name`` updated (for CLI overrides such as --teacher)."""
        stages = tuple(s.model_copy(update=changes) if s.stage == name else s for s in self.stages)
        return self.model_copy(update={"stages": stages})


def list_recipes() -> list[str]:
    return builtin_names("recipes")


def load_recipe(name_or_path: str | Path) -> Recipe:
    """A shipped recipe by name (``default``, ``fast``) or a recipe YAML file by path."""
    path = Path(name_or_path)
    if not path.is_file():
        if str(name_or_path) not in list_recipes():
            if path.suffix in (".yaml", ".yml"):
                raise ConfigError(f"recipe file {path} does not exist")
            raise UnknownNameError("recipe", str(name_or_path), list_recipes())
        path = builtin_dir("recipes") / f"{name_or_path}.yaml"
    data, lines = load_yaml(path)
    return parse_recipe(data, source=str(path), lines=lines, default_name=path.stem)


def parse_recipe(data: Any, *, source: str, lines: Lines, default_name: str = "custom") -> Recipe:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a recipe is a mapping with 'stages' (a list), got {type(data).__name__}")
    unknown = set(data) - {"name", "description", "data", "stages"}
    if unknown:
        key = sorted(unknown, key=str)[0]
        raise ConfigError(f"{source}:{line_of(lines, (key,))}: unknown key '{key}' "
                          "(allowed here: data, description, name, stages)")
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ConfigError(f"{source}:{line_of(lines, ('stages',)) or 1}: 'stages' must be a non-empty list "
                          f"of stages ({', '.join(STAGES)})")
    stages = tuple(parse_stage(item, i, source=source, lines=lines) for i, item in enumerate(raw_stages))
    rest = {k: v for k, v in data.items() if k != "stages"}
    rest.setdefault("name", default_name)
    header = validate(_Header, rest, source=source, lines=lines)
    try:
        check_order(stages)
    except StageOrderError as exc:
        raise ConfigError(f"{source}:{line_of(lines, ('stages', exc.index))}: {exc}") from None
    return Recipe(name=str(header.name), description=header.description, data=header.data, stages=stages)


class _Header(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    data: DataSpec = DataSpec()


def parse_stage(item: Any, index: int, *, source: str, lines: Lines) -> Stage:
    where = f"{source}:{line_of(lines, ('stages', index))}"
    if not isinstance(item, dict) or not isinstance(item.get("stage"), str):
        raise ConfigError(f"{where}: stages[{index}] must be a mapping with 'stage: NAME' ({', '.join(STAGES)})")
    try:
        cls = stage_class(item["stage"])
    except UnknownNameError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return validate(cls, item, source=source, lines=lines, prefix=("stages", index))

"""Pipeline stages by name. A new built-in stage is one module here and one line in ``STAGES``; a user's stage
is one class decorated with :func:`register_stage`."""

from __future__ import annotations

from collections.abc import Callable

from edgekd.errors import ConfigError, UnknownNameError
from edgekd.registry import register
from edgekd.stages.base import NEEDS, Stage, StageOrderError
from edgekd.stages.benchmark import BenchmarkStage
from edgekd.stages.distill import DistillStage
from edgekd.stages.export import ExportStage
from edgekd.stages.factorize import FactorizeStage
from edgekd.stages.prune import PruneStage
from edgekd.stages.quantize import QuantizeStage
from edgekd.stages.teacher import TeacherStage

STAGES: dict[str, type[Stage]] = {
    "teacher": TeacherStage,
    "distill": DistillStage,
    "prune": PruneStage,
    "factorize": FactorizeStage,
    "quantize": QuantizeStage,
    "export": ExportStage,
    "benchmark": BenchmarkStage,
}


PUBLIC_STAGES: dict[str, type[Stage]] = {cls.public_name: cls for cls in STAGES.values() if cls.public_name}
"""The names a Python user builds the built-in stages by (``edgekd.Prune(reduction=0.5)``): each class's
``public_name``, exported lazily by ``edgekd.EXPORTS``. A user's stage is built from its own class."""


def register_stage(name: str, *, override: bool = False) -> Callable[[type], type]:
    """Decorator: make a :class:`Stage` subclass usable as ``stage: NAME`` in recipes (objects of it go in
    ``edgekd.compress(stages=[...])`` either way).

    The class declares ``stage: Literal[NAME] = NAME``, its settings as fields, and ``apply(given, ctx, row)``
    returning the next :class:`~edgekd.stages.base.Handoff`; ``needs``/``makes`` (class attributes) say what
    must come before it (default: a model) and what it makes, so the recipe check places it (needing nothing,
    it can start a recipe, and the check suggests it wherever what it makes is missing); ``restore``
    rebuilds its handoff when a resumed run skips it (default: hands on what it was given).
    """
    def add(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, Stage)):
            raise ConfigError(f"register_stage('{name}') decorates a subclass of edgekd.stages.base.Stage, not {cls!r}")
        field = cls.model_fields.get("stage")
        if field is None or field.default != name:
            raise ConfigError(f"stage '{name}': the class needs the field `stage: Literal['{name}'] = '{name}'` "
                              f"(recipes and reports name it by that field)")
        register(STAGES, "stage", name, cls, override=override)
        return cls
    return add


def stage_class(name: str) -> type[Stage]:
    if name not in STAGES:
        raise UnknownNameError("stage", name, STAGES)
    return STAGES[name]


def check_order(stages) -> None:
    """Refuse, before anything runs, a chain in which a stage comes before what it needs is made."""
    made: set[str] = set()
    for index, stage in enumerate(stages):
        missing = [need for need in stage.needs if need not in made]
        if missing:
            raise StageOrderError(f"stages[{index}] ({stage.stage}) needs {NEEDS.get(missing[0], repr(missing[0]))}, "
                                  f"which no stage before it makes: put {makers_of(missing[0])} before it", index)
        made.update(stage.makes)


def makers_of(need: str) -> str:
    """The registered stages that make ``need``, read off their classes: those that can start a recipe (they need
    nothing, as ``teacher`` does) when there are any, as a hint such as ``a teacher stage``."""
    makers = [name for name, cls in STAGES.items() if need in cls.makes]
    starters = [name for name in makers if STAGES[name].needs == ()]
    names = starters or makers
    if not names:
        return f"a stage that makes {NEEDS.get(need, repr(need))}"
    return ("an " if names[0][0] in "aeiou" else "a ") + " or ".join(names) + " stage"

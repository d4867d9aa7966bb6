"""What every stage is: a frozen, validated configuration with one ``apply`` method."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from torch import nn

from edgekd.context import RunContext


class Stage(BaseModel):
    """A pipeline step. Its fields are its settings, so a recipe is a list of stages.

    ``apply(model, ctx)`` returns the model for the next stage and may put accuracy,
    latency and details into ``ctx`` for its report row. ``restore`` rebuilds the same
    result from the stage's folder when a resumed run skips it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str

    def apply(self, model: nn.Module | None, ctx: RunContext) -> nn.Module:
        raise NotImplementedError

    def restore(self, model: nn.Module | None, ctx: RunContext) -> nn.Module | None:
        return model

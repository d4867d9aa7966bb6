"""Knowledge distillation: feature taps, losses (registry ``LOSSES``), objectives, teacher caching."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgekd.distill.losses import AT, DKD, KD, NKD, RKD, DistillLoss, FitNets, LossConfig, Outputs
from edgekd.distill.taps import FeatureTaps, find_module
from edgekd.errors import UnknownNameError


class LITConfig(LossConfig):
    """LIT's block-wise phase: ``epochs`` of block training before the end-to-end KD phase."""

    epochs: int = Field(3, ge=1)
    pairs: tuple[tuple[str, str], ...] | None = None


LOSSES: dict[str, type] = {"kd": KD, "dkd": DKD, "fitnets": FitNets, "at": AT, "rkd": RKD, "nkd": NKD,
                          "lit": LITConfig}
"""Losses by name. ``lit`` is a training phase rather than a weighted term (see distill/lit.py)."""


def config_class(name: str) -> type[LossConfig]:
    if name not in LOSSES:
        raise UnknownNameError("loss", name, LOSSES)
    entry = LOSSES[name]
    return entry if isinstance(entry, type) and issubclass(entry, LossConfig) else entry.Config


class LossSpec(BaseModel):
    """One entry of a distill stage's ``losses``: a name, a weight, and that loss's own settings."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    weight: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _check_settings(self) -> "LossSpec":
        try:
            cls = config_class(self.name)
        except UnknownNameError as exc:
            raise ValueError(str(exc)) from None
        cls.model_validate(self.model_extra or {})
        return self

    def settings(self) -> LossConfig:
        return config_class(self.name).model_validate(self.model_extra or {})

    def build(self) -> DistillLoss:
        return LOSSES[self.name](self.settings())


__all__ = ["LOSSES", "DistillLoss", "FeatureTaps", "LITConfig", "LossSpec", "Outputs", "find_module"]

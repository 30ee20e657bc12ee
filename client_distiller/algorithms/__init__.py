"""Training algorithms: a plain registry of small classes sharing one interface."""

from client_distiller.algorithms.adip import SD, ADiP
from client_distiller.algorithms.base import (
    Algorithm,
    Batch,
    BuildContext,
    HParams,
    Stage,
    WhiteBoxTeacher,
)
from client_distiller.algorithms.baselines import ERM, KD, ZeroShot

ALGORITHMS: dict[str, type[Algorithm]] = {
    "erm": ERM,
    "kd": KD,
    "adip": ADiP,
    "sd": SD,
    "zeroshot": ZeroShot,
}

__all__ = [
    "ALGORITHMS",
    "ERM",
    "KD",
    "SD",
    "ADiP",
    "Algorithm",
    "Batch",
    "BuildContext",
    "HParams",
    "Stage",
    "WhiteBoxTeacher",
    "ZeroShot",
]

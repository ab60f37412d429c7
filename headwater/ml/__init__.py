"""Machine learning: features defined once for batch and stream, training, the model registry.

Most ML code needs only::

    from headwater.ml import FeatureSet, Feature, OneHot, Impute, train, open_registry

Names load on first use, so ``import headwater.ml`` imports neither Polars nor
scikit-learn, LightGBM or skops.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "FeatureSet": "headwater.ml.features",
    "FittedFeatureSet": "headwater.ml.features",
    "Feature": "headwater.ml.transforms",
    "Impute": "headwater.ml.transforms",
    "StandardScale": "headwater.ml.transforms",
    "RobustScale": "headwater.ml.transforms",
    "OneHot": "headwater.ml.transforms",
    "Ordinal": "headwater.ml.transforms",
    "FrequencyEncode": "headwater.ml.transforms",
    "QuantileBucket": "headwater.ml.transforms",
    "ratio": "headwater.ml.transforms",
    "log1p": "headwater.ml.transforms",
    "clip": "headwater.ml.transforms",
    "parse_datetime": "headwater.ml.transforms",
    "date_part": "headwater.ml.transforms",
    "regex_extract": "headwater.ml.transforms",
    "map_values": "headwater.ml.transforms",
    "fill": "headwater.ml.transforms",
    "train": "headwater.ml.train",
    "TrainResult": "headwater.ml.train",
    "split": "headwater.ml.split",
    "profile": "headwater.ml.profile",
    "BetterThanChampion": "headwater.ml.registry",
    "ModelVersion": "headwater.ml.registry",
    "open_registry": "headwater.ml.registry_sql",
    "memory_registry": "headwater.ml.registry_sql",
}

# Kept literal so tools can read it; a test checks every name resolves.
__all__ = [
    "BetterThanChampion",
    "Feature",
    "FeatureSet",
    "FittedFeatureSet",
    "FrequencyEncode",
    "Impute",
    "ModelVersion",
    "OneHot",
    "Ordinal",
    "QuantileBucket",
    "RobustScale",
    "StandardScale",
    "TrainResult",
    "clip",
    "date_part",
    "fill",
    "log1p",
    "map_values",
    "memory_registry",
    "open_registry",
    "parse_datetime",
    "profile",
    "ratio",
    "regex_extract",
    "split",
    "train",
]


class _Package(types.ModuleType):
    """This package, keeping ``split``, ``train`` and ``profile`` the functions once their modules load.

    The import system binds a loaded submodule as an attribute of its package, so after any
    ``import headwater.ml.split`` the name ``headwater.ml.split`` would be the module and
    ``from headwater.ml import split`` would hand out a module instead of the function (seen in
    the house-price DAG). A submodule named like the function it exports binds the function.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'headwater.ml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from headwater.ml.features import FeatureSet, FittedFeatureSet
    from headwater.ml.profile import profile
    from headwater.ml.registry import BetterThanChampion, ModelVersion
    from headwater.ml.registry_sql import memory_registry, open_registry
    from headwater.ml.split import split
    from headwater.ml.train import TrainResult, train
    from headwater.ml.transforms import (
        Feature,
        FrequencyEncode,
        Impute,
        OneHot,
        Ordinal,
        QuantileBucket,
        RobustScale,
        StandardScale,
        clip,
        date_part,
        fill,
        log1p,
        map_values,
        parse_datetime,
        ratio,
        regex_extract,
    )

"""headwater: machine-learning data pipelines, from DAGs to streams.

Most user code needs only what this module exports::

    from headwater import DAG, task, BashOperator

Names are loaded on first use (``__getattr__`` over :data:`_EXPORTS`), so
``import headwater`` stays cheap: no Jinja2, SQLAlchemy or fsspec until a DAG
needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # authoring
    "DAG": "headwater.orchestration.dag",
    "dag": "headwater.orchestration.taskflow",
    "task": "headwater.orchestration.taskflow",
    "XComArg": "headwater.orchestration.taskflow",
    "BaseOperator": "headwater.orchestration.baseoperator",
    "chain": "headwater.orchestration.baseoperator",
    "cross_downstream": "headwater.orchestration.baseoperator",
    "PythonOperator": "headwater.orchestration.operators",
    "BashOperator": "headwater.orchestration.operators",
    "EmptyOperator": "headwater.orchestration.operators",
    "BranchPythonOperator": "headwater.orchestration.operators",
    "ShortCircuitOperator": "headwater.orchestration.operators",
    "TriggerRule": "headwater.orchestration.states",
    "Param": "headwater.orchestration.params",
    "TaskGroup": "headwater.orchestration.taskgroup",
    "task_group": "headwater.orchestration.taskgroup",
    # sensors
    "BaseSensorOperator": "headwater.orchestration.sensors",
    "PokeReturnValue": "headwater.orchestration.sensors",
    "TimeDeltaSensor": "headwater.orchestration.sensors",
    "DateTimeSensor": "headwater.orchestration.sensors",
    "FileSensor": "headwater.orchestration.sensors",
    "ExternalTaskSensor": "headwater.orchestration.sensors",
    "PythonSensor": "headwater.orchestration.sensors",
    # Luigi-style targets and tasks
    "Target": "headwater.orchestration.targets",
    "LocalTarget": "headwater.orchestration.targets",
    "FsspecTarget": "headwater.orchestration.targets",
    "Task": "headwater.orchestration.classic",
    "WrapperTask": "headwater.orchestration.classic",
    "Parameter": "headwater.orchestration.parameters",
    "IntParameter": "headwater.orchestration.parameters",
    "FloatParameter": "headwater.orchestration.parameters",
    "BoolParameter": "headwater.orchestration.parameters",
    "DateParameter": "headwater.orchestration.parameters",
    "DateSecondParameter": "headwater.orchestration.parameters",
    "ListParameter": "headwater.orchestration.parameters",
    # errors user code raises or catches
    "HeadwaterError": "headwater.errors",
    "TaskSkipError": "headwater.errors",
    "TaskFailNoRetryError": "headwater.errors",
    "TaskFailedError": "headwater.errors",
}

# Kept literal so tools can read it; tests check it matches _EXPORTS.
__all__ = [
    "DAG",
    "BaseOperator",
    "BaseSensorOperator",
    "BashOperator",
    "BoolParameter",
    "BranchPythonOperator",
    "DateParameter",
    "DateSecondParameter",
    "DateTimeSensor",
    "EmptyOperator",
    "ExternalTaskSensor",
    "FileSensor",
    "FloatParameter",
    "FsspecTarget",
    "HeadwaterError",
    "IntParameter",
    "ListParameter",
    "LocalTarget",
    "Param",
    "Parameter",
    "PokeReturnValue",
    "PythonOperator",
    "PythonSensor",
    "ShortCircuitOperator",
    "Target",
    "Task",
    "TaskFailNoRetryError",
    "TaskFailedError",
    "TaskGroup",
    "TaskSkipError",
    "TimeDeltaSensor",
    "TriggerRule",
    "WrapperTask",
    "XComArg",
    "__version__",
    "chain",
    "cross_downstream",
    "dag",
    "task",
    "task_group",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'headwater' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # for type checkers and IDEs; at run time names load lazily
    from headwater.errors import HeadwaterError, TaskFailedError, TaskFailNoRetryError, TaskSkipError
    from headwater.orchestration.baseoperator import BaseOperator, chain, cross_downstream
    from headwater.orchestration.classic import Task, WrapperTask
    from headwater.orchestration.dag import DAG
    from headwater.orchestration.operators import (
        BashOperator,
        BranchPythonOperator,
        EmptyOperator,
        PythonOperator,
        ShortCircuitOperator,
    )
    from headwater.orchestration.parameters import (
        BoolParameter,
        DateParameter,
        DateSecondParameter,
        FloatParameter,
        IntParameter,
        ListParameter,
        Parameter,
    )
    from headwater.orchestration.params import Param
    from headwater.orchestration.sensors import (
        BaseSensorOperator,
        DateTimeSensor,
        ExternalTaskSensor,
        FileSensor,
        PokeReturnValue,
        PythonSensor,
        TimeDeltaSensor,
    )
    from headwater.orchestration.states import TriggerRule
    from headwater.orchestration.targets import FsspecTarget, LocalTarget, Target
    from headwater.orchestration.taskflow import XComArg, dag, task
    from headwater.orchestration.taskgroup import TaskGroup, task_group

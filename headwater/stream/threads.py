"""One math thread per stream-app process, by default.

Stream apps scale out by processes (``headwater stream run app --instances N``, one per
core). Each numerical library (OpenBLAS, MKL, OpenMP behind numpy, scikit-learn,
LightGBM; Polars' own pool) starts as many threads as there are cores, in every process,
so N processes run N x cores busy threads that preempt one another. Measured for this
project: a one-row ``predict`` took about 83 ms instead of 7 ms when OpenMP threads of
two processes fought over two cores. Micro-batches are small, so one thread per process
loses almost nothing and keeps latency flat.

This module imports nothing heavy: the CLI calls :func:`pin_math_threads` before it
imports the app's module (the limits must be in the environment before the libraries
load; for those already loaded, ``threadpoolctl`` is used when installed).
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

from headwater.errors import UserError

# Read by OpenMP, OpenBLAS, MKL, Apple Accelerate, numexpr and Polars when they load.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "POLARS_MAX_THREADS",
)

OPT_OUT = "HEADWATER_STREAM_MATH_THREADS"


def pin_math_threads(threads: int | None = 1, *, environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Limit math libraries to ``threads`` threads in this process; return the variables set.

    Opt out with ``threads=None`` or by setting ``HEADWATER_STREAM_MATH_THREADS=0``
    (``HEADWATER_STREAM_MATH_THREADS=4`` asks for 4 instead). A variable the user already
    set (``OMP_NUM_THREADS=4``) is left alone: an explicit choice wins.
    """
    env = os.environ if environ is None else environ
    wanted = env.get(OPT_OUT)
    if wanted is not None:
        try:
            threads = int(wanted) if wanted.strip() not in ("", "0") else None
        except ValueError:
            raise UserError(f"{OPT_OUT} must be a number of threads or 0, got {wanted!r}") from None
    if threads is None:
        return {}
    if threads < 1:
        raise UserError(f"math threads must be at least 1, got {threads}", hint=f"set {OPT_OUT}=0 to opt out")
    value = str(threads)
    applied: dict[str, str] = {}
    for name in THREAD_VARIABLES:
        if name not in env:
            env[name] = value
            applied[name] = value
    if environ is None:
        _limit_loaded_libraries(threads)
    return applied


def _limit_loaded_libraries(threads: int) -> None:
    """Libraries imported before the call read the environment already: limit their pools directly."""
    if "numpy" in sys.modules or "sklearn" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            threadpool_limits(limits=threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)

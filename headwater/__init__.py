"""headwater: machine-learning data pipelines, from DAGs to streams.

Most user code needs only what this module exports.
"""

from __future__ import annotations

from headwater.errors import HeadwaterError

__version__ = "0.1.0"

__all__ = ["HeadwaterError", "__version__"]

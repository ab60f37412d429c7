"""JSON responses safe to open in a browser: ``<``, ``>`` and ``&`` are written as ``\\u003c`` ...

A DAG described as ``<script>...`` then never appears as markup in a response, even if a browser
were tricked into rendering the JSON as HTML (and ``nosniff`` tells it not to); parsers read the
same strings back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import JSONResponse

_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


class EscapedJSONResponse(JSONResponse):
    """JSON with HTML-significant characters escaped, and ``X-Content-Type-Options: nosniff``."""

    def __init__(self, content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None,
                 media_type: str | None = None, background: BackgroundTask | None = None) -> None:
        # An explicit signature: FastAPI reads the default status code from it for the OpenAPI schema.
        super().__init__(content, status_code, headers, media_type, background)
        self.headers["X-Content-Type-Options"] = "nosniff"

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.translate(_ESCAPES).encode("utf-8")

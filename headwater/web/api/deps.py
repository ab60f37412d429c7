"""Annotated dependencies of the API routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from headwater.web.auth import Principal, require_read, require_write

Reader = Annotated[Principal, Depends(require_read)]
Writer = Annotated[Principal, Depends(require_write)]

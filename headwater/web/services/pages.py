"""Paging arguments shared by the list services (limit/offset, bounded)."""

from __future__ import annotations

from headwater.errors import UserError

MAX_LIMIT = 500


def check_page(limit: int, offset: int) -> None:
    """Refuse a page the server would not serve (negative, or more than :data:`MAX_LIMIT` rows)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise UserError(f"limit {limit} is out of range", hint=f"ask for 1 to {MAX_LIMIT} rows and page with offset")
    if offset < 0:
        raise UserError(f"offset {offset} is negative", hint="offsets start at 0")

"""The query and command layer shared by the REST API, the UI pages and the CLI.

Each function takes a :class:`WebContext` (settings + store, built once per app) and returns
plain dataclasses; nothing here knows about HTTP. Errors are headwater's ``UserError`` /
``HeadwaterError`` with a hint, which the app turns into JSON (API) or a page (UI).
"""

from headwater.web.services.context import WebContext

__all__ = ["WebContext"]

"""The browser UI of ``headwater web``: server-rendered pages (Jinja2, autoescaped) with htmx live parts.

:func:`headwater.web.app.create_app` includes :data:`router` and serves :data:`STATIC_DIR` at
``/static`` (CSS, htmx, uPlot: vendored, see ``static/THIRD_PARTY.md``; no build step, no CDN).
Pages read and write through :mod:`headwater.web.services`, the layer the REST API uses too.

Routes: ``/dags`` (list, import errors, pause, trigger), ``/dags/{dag}/grid|graph|gantt|runs|code``,
``/dags/{dag}/tasks/{task}?run_id=&try=`` (details, log streamed while it runs, clear, mark),
``/models``, ``/models/{name}`` (versions side by side, lineage, profile, promote/reject),
``/streams`` (apps, topics, groups, dead letters, live charts from ``/streams/live.json``),
``/login``, ``/logout``.
"""

from __future__ import annotations

from fastapi import APIRouter

from headwater.web.ui import views_auth, views_dags, views_models, views_streams, views_tasks
from headwater.web.ui.render import STATIC_DIR

router = APIRouter()
router.include_router(views_auth.router)
router.include_router(views_streams.router)
router.include_router(views_models.router)
# Task routes before DAG routes: "/dags/{dag_id:path}" at the end of the DAG router catches the rest.
router.include_router(views_tasks.router)
router.include_router(views_dags.router)

__all__ = ["STATIC_DIR", "router"]

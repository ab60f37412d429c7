"""``headwater web``: the REST API (``/api/v1``) and the browser UI, served by one FastAPI app.

Importing this package imports nothing heavy; :func:`headwater.web.app.create_app` builds the app.
"""

"""REST serving of a registered model: ``headwater serve house_prices@champion``.

Endpoints (FastAPI, imported by this module only: ``import headwater`` does not load it):

* ``POST /predict``: the body is one record (a JSON object) or a list of records (a JSON
  array of objects). Every declared input of the model's feature set must be present in
  every record (``null`` for an unknown value; other fields are ignored). Answers one object
  ``{"prediction": 412345.6, "model_version": "house_prices:3"}`` for one record, and a
  JSON array of such objects, in request order, for a list. A body that does not fit
  gets a 422 whose ``detail`` entries name the row and the field
  (``{"loc": ["body", 0, "bedrooms"], "row": 0, "field": "bedrooms", "msg": ...}``); a list
  with one bad record is refused whole, so a client never has to match partial answers.
* ``GET /health``: ``{"status": "ok", "model_version": ...}``.
* ``GET /model``: the version in use, its signature, metrics, status and the model's aliases.
* ``GET /metrics``: the process's metrics in the Prometheus text format (``headwater.monitoring``).

Hot reload: a :class:`~headwater.ml.scoring.ModelFollower` holds the model. A thread
re-resolves the reference every ``reload_interval`` seconds and, when the alias moved,
loads the new version completely before switching (a version that fails to load leaves
the old one serving). A request takes the model in use when it starts and finishes on it;
every answer names the version that computed it. Requests never touch the registry.

Decoding is one ``orjson.loads`` and one Polars column per input (see
:mod:`headwater.ml.serving_records`); scoring is one :meth:`Scorer.score` call per request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from headwater.errors import UserError
from headwater.ml.scoring import DEFAULT_RELOAD_INTERVAL, ModelFollower, Scorer
from headwater.ml.serving_records import RowErrors, add_reasons, records_frame

log = logging.getLogger(__name__)

OUTPUT = "prediction"
VERSION = "model_version"
SPEC_VARIABLE = "HEADWATER_SERVE_SPEC"  # what worker processes of `headwater serve --workers N` serve


class Reloader(threading.Thread):
    """Re-resolves the follower's reference every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, follower: ModelFollower, interval: float) -> None:
        super().__init__(name="headwater-serve-reload", daemon=True)
        self.follower = follower
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.follower.current()  # the follower re-resolves on every call (interval 0)
            except Exception:  # never let the thread die: the next tick tries again
                log.exception("%s: checking the alias failed", self.follower.model_ref)

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=30)


def predict_body(scorer: Scorer, body: bytes) -> tuple[int, bytes]:
    """Status and JSON answer of ``POST /predict`` for ``body`` scored by ``scorer`` (no HTTP involved)."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return 422, _detail_bytes(f"the body is not JSON: {exc}")
    single = isinstance(decoded, dict)
    if single:
        records = [decoded]
    elif isinstance(decoded, list):
        if not decoded:
            return 422, _detail_bytes("the body is an empty list; send one record (an object) or a list of them")
        records = decoded
    else:
        return 422, _detail_bytes(f"the body is a JSON {type(decoded).__name__}; send one record (an object) "
                                  "or a list of records (an array of objects)")
    frame, errors = records_frame(records, scorer.features.input_schema)
    if frame.width:  # built: every record is an object with every field; now the values
        add_reasons(errors, scorer.validate(frame))
    if errors:
        return 422, _errors_bytes(errors, scorer)
    try:
        predictions = scorer.score(frame).tolist()
    except UserError as exc:  # input validate() let through but the features refuse: still the client's data
        return 422, _detail_bytes(f"the records do not fit model {scorer.label}: {exc.message}")
    label = scorer.label
    if single:
        return 200, orjson.dumps({OUTPUT: predictions[0], VERSION: label})
    return 200, orjson.dumps([{OUTPUT: p, VERSION: label} for p in predictions])


def _detail_bytes(message: str) -> bytes:
    return orjson.dumps({"detail": [{"loc": ["body"], "row": None, "field": None, "msg": message,
                                     "type": "value_error"}]})


def _errors_bytes(errors: RowErrors, scorer: Scorer) -> bytes:
    detail = errors.detail()
    body: dict[str, Any] = {"detail": detail, "error_count": errors.count(), VERSION: scorer.label}
    return orjson.dumps(body)


def create_app(
    model_ref: str,
    *,
    registry: Any = None,
    features: Any = None,
    reload_interval: float = DEFAULT_RELOAD_INTERVAL,
    allow_pickle: bool = False,
) -> Any:
    """The FastAPI app serving ``model_ref``; the model is loaded here, so a bad reference fails now.

    ``reload_interval`` is how often (seconds) the alias is checked; 0 serves the first
    version loaded for the life of the app.
    """
    if reload_interval < 0:
        from headwater.ml.scoring import ScorerSetupError

        raise ScorerSetupError(f"reload_interval must be >= 0, got {reload_interval}",
                               hint="0 turns hot reload off; 5 checks the alias every 5 seconds")
    # Interval 0: the follower re-resolves whenever asked; only the reload thread asks.
    follower = ModelFollower(model_ref, registry=registry, features=features, reload_interval=0,
                             allow_pickle=allow_pickle)
    follower.current()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reloader = Reloader(follower, reload_interval) if reload_interval > 0 else None
        if reloader is not None:
            reloader.start()
        try:
            yield
        finally:
            if reloader is not None:
                reloader.stop()

    app = FastAPI(title=f"headwater serve {model_ref}", lifespan=lifespan,
                  description="Scores records with a registered model; the answer names the model version.")
    app.state.follower = follower

    def scorer() -> Scorer:
        current = follower.loaded
        assert current is not None  # loaded in create_app
        return current

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        """Score one record (an object) or a list of records (an array); 422 names the bad row and field."""
        body = await request.body()
        # Scored on the event loop, not in a thread pool: for one record the hop to a thread
        # costs more than the scoring; Polars and scikit-learn release the GIL while they work.
        status, content = predict_body(scorer(), body)
        return Response(content, status_code=status, media_type="application/json")

    @app.get("/health")
    def health() -> dict[str, Any]:
        """The server is up and has a model."""
        return {"status": "ok", "model_ref": model_ref, VERSION: scorer().label}

    @app.get("/model")
    def model() -> dict[str, Any]:
        """The version in use: signature, metrics, status, and where the model's aliases point now."""
        current = scorer()
        mv = current.version
        aliases = {a.alias: a.version for a in follower.registry.aliases(mv.name)} if mv is not None else {}
        return {
            "model_ref": model_ref, VERSION: current.label,
            "name": getattr(mv, "name", None), "version": getattr(mv, "version", None),
            "status": getattr(mv, "status", None), "signature": getattr(mv, "signature", {}),
            "metrics": getattr(mv, "metrics", {}), "aliases": aliases,
            "created_at": mv.created_at.isoformat() if mv is not None and mv.created_at else None,
            "reload_interval": reload_interval,
        }

    _mount_metrics(app)
    return app


def app_from_env() -> Any:
    """The app of one worker process of ``headwater serve --workers N`` (uvicorn imports it by name).

    Each worker loads the model and follows the alias on its own: while the alias moves,
    workers may answer from different versions for up to ``reload_interval``; every answer
    names its version.
    """
    from headwater.ml.registry_sql import open_registry
    from headwater.settings import Settings

    spec = json.loads(os.environ[SPEC_VARIABLE])
    return create_app(spec["ref"], registry=open_registry(Settings.from_env()),
                      reload_interval=spec["reload_interval"], allow_pickle=spec.get("allow_pickle", False))


def _mount_metrics(app: Any) -> None:
    """``/metrics`` (this process's metrics, Prometheus text) from headwater.monitoring, when installed."""
    try:
        from headwater.monitoring.prometheus import metrics_app

        # A route, not a mount: no redirect from /metrics to /metrics/.
        app.add_route("/metrics", metrics_app(), include_in_schema=False)
    except Exception as exc:  # monitoring is an extra: serving works without it
        log.warning("/metrics not served: %s", exc)

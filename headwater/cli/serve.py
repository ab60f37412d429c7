"""``headwater serve NAME@ALIAS``: a REST server scoring records with a registered model."""

from __future__ import annotations

import json
import os

import click

from headwater.cli.env import Env
from headwater.cli.output import say

pass_env = click.make_pass_decorator(Env)


@click.command("serve")
@click.argument("ref")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but 127.0.0.1 exposes the model to the network.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8000, show_default=True)
@click.option("--reload-interval", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds between checks of the alias; the new version is loaded, then served (0: never).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes sharing the port, each with its own copy of the model.")
@pass_env
def serve(env: Env, ref: str, host: str, port: int, reload_interval: float, workers: int) -> None:
    """Serve REF (NAME@ALIAS, NAME:VERSION or NAME) over HTTP: POST /predict, GET /health, GET /model.

    POST /predict takes one record (a JSON object) or a list of them (an array) and answers
    the prediction and the model version for each; records that do not fit the model's
    signature get a 422 naming the row and the field. When the alias moves, the server
    switches to the new version without a restart. With --workers N, each process follows
    the alias on its own (answers name their version while they switch).
    """
    from headwater.stream import pin_math_threads

    # One core's worth of math threads, as `headwater stream run`: requests are scored one at a
    # time on the event loop, and OpenMP's threads waking for a one-record predict cost more
    # than they give on a shared machine (HEADWATER_STREAM_MATH_THREADS=0 opts out).
    pin_math_threads()
    import uvicorn
    from rich.markup import escape

    from headwater.ml.registry_sql import open_registry
    from headwater.ml.serving import SPEC_VARIABLE, create_app

    # Loaded before the server starts: a bad reference is one error line, not a traceback.
    app = create_app(ref, registry=open_registry(env.settings), reload_interval=reload_interval)
    version = app.state.follower.loaded.label
    follows = f", checks the alias every {reload_interval:g} s" if reload_interval and "@" in ref else ""
    processes = f", {workers} workers" if workers > 1 else ""
    say(f"serving [bold]{escape(ref)}[/] ({escape(version)}{follows}{processes}) on "
        f"[bold]http://{escape(host)}:{port}[/] (POST /predict, GET /health, GET /model, docs at /docs)")
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    del app  # each worker process loads its own copy
    os.environ[SPEC_VARIABLE] = json.dumps({"ref": ref, "reload_interval": reload_interval})
    os.environ["HEADWATER_HOME"] = str(env.settings.home)  # the workers open the same registry
    uvicorn.run("headwater.ml.serving:app_from_env", factory=True, workers=workers, host=host, port=port,
                log_level="warning")

"""``headwater web``: serve the REST API and the UI."""

from __future__ import annotations

import click

from headwater.cli.env import Env
from headwater.cli.output import say

pass_env = click.make_pass_decorator(Env)


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but 127.0.0.1 exposes the server to the network.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8080, show_default=True)
@click.option("--read-only-open", is_flag=True,
              help="Let anyone read DAGs, runs, logs and models without logging in (writes still need the token).")
@pass_env
def web(env: Env, host: str, port: int, read_only_open: bool) -> None:
    """Serve the web UI and the REST API (/api/v1, docs at /docs)."""
    import uvicorn
    from rich.markup import escape

    from headwater.web.app import create_app

    app = create_app(env.settings, read_only_open=read_only_open)
    say(f"headwater web on [bold]http://{escape(host)}:{port}[/] (API docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")

"""``headwater web``: serve the REST API (``/api/v1``, docs at ``/docs``) and the UI."""

from __future__ import annotations

import os

import click

from headwater.cli.env import Env
from headwater.cli.output import say

pass_env = click.make_pass_decorator(Env)
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but 127.0.0.1 exposes the server to the network.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8080, show_default=True)
@click.option("--read-only-open", is_flag=True,
              help="Let anyone read DAGs, runs, logs and models without logging in (writes still need the token).")
@click.option("--parse/--no-parse", default=True, show_default=True,
              help="Parse the DAG folder once before serving (the scheduler keeps it fresh afterwards).")
@pass_env
def web(env: Env, host: str, port: int, read_only_open: bool, parse: bool) -> None:
    """Serve the web UI and the REST API (/api/v1, docs at /docs).

    Writes need the API token: HEADWATER_API_TOKEN, or the one `headwater db init` printed.
    """
    import uvicorn
    from rich.markup import escape

    from headwater.web.app import create_app
    from headwater.web.auth import stored_token_hash

    settings = env.settings
    token = os.environ.get("HEADWATER_API_TOKEN", "").strip() or None
    if parse:
        env.refresh_dags()
    if token is None and stored_token_hash(settings) is None:
        say("[yellow]note:[/] no API token: nobody can log in or change anything; set HEADWATER_API_TOKEN "
            "or run `headwater db init` to make one", err=True)
    loopback = host in LOOPBACK
    if not loopback:
        say(f"[yellow]note:[/] listening on {escape(host)}: other machines can reach this server", err=True)
    # On loopback, only loopback Host headers: a page whose DNS name is rebound to 127.0.0.1 is refused.
    app = create_app(settings, token=token, read_only_open=read_only_open,
                     allowed_hosts=list(LOOPBACK) if loopback else None)
    say(f"headwater web on [bold]http://{escape(host)}:{port}[/] (API docs at /docs; Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")

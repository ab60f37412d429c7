"""``headwater``: the command-line entry point.

Errors are one readable line and a hint, not a traceback (``--debug`` shows it).
Exit codes: 0 ok, 1 a run or task failed or an error occurred, 2 bad usage.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from headwater.cli.env import Env
from headwater.cli.output import say
from headwater.errors import HeadwaterError


class _Group(click.Group):
    """Turns headwater errors into one line plus a hint."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except HeadwaterError as exc:
            env = ctx.find_object(Env)
            if env is not None and env.debug:
                raise
            from rich.markup import escape

            say(f"[bold red]error:[/] {escape(_one_line(exc.message))}", err=True)
            if exc.hint:
                say(f"[yellow]hint:[/] {escape(_one_line(exc.hint))}", err=True)
            ctx.exit(1)


def _one_line(text: str) -> str:
    return " ".join(text.split())


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dags", "dags_folder", type=click.Path(path_type=Path), default=None,
              help="DAG folder (default: $HEADWATER_DAGS_FOLDER or $HEADWATER_HOME/dags).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="headwater")
@click.pass_context
def cli(ctx: click.Context, dags_folder: Path | None, debug: bool) -> None:
    """headwater: ML data pipelines — DAGs, targets, schedules, runs."""
    ctx.obj = Env(dags_folder=dags_folder, debug=debug)


def _register() -> None:
    from headwater.cli import classic, dags, misc, models, tasks
    from headwater.cli import stream as stream_commands

    cli.add_command(dags.dags)
    cli.add_command(tasks.tasks)
    cli.add_command(misc.runs)
    cli.add_command(misc.db)
    cli.add_command(misc.pools)
    cli.add_command(misc.scheduler)
    cli.add_command(classic.run_classic)
    cli.add_command(models.models)
    stream_commands.register(cli)
    from headwater.cli.web import web

    cli.add_command(web)
    from headwater.cli.serve import serve

    cli.add_command(serve)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    _register()
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="headwater")


if __name__ == "__main__":
    main()

"""``headwater models ...``: list, show, approve, promote, reject, alias, compare.

Tables fit 80 columns: names and numbers never wrap; reasons are the only wrapping text.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import click

from headwater.cli.env import Env
from headwater.cli.output import Col, console, say, table, when

if TYPE_CHECKING:
    from headwater.ml.registry import ModelVersion
    from headwater.ml.registry_sql import SqlModelRegistry

pass_env = click.make_pass_decorator(Env)

STATUS_STYLE = {"approved": "green", "rejected": "bold red", "registered": "grey62"}
_who = click.option("--who", default=None, help="Who does this (default: the login name).")
_reason = click.option("--reason", required=True, help="Why; kept in the model's history.")


def _registry(env: Env) -> SqlModelRegistry:
    from headwater.ml.registry_sql import open_registry

    return open_registry(env.settings)


def _user(who: str | None) -> str:
    if who:
        return who
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        return "unknown"


def status(value: str) -> str:
    """A version status as Rich markup in its colour."""
    return f"[{STATUS_STYLE.get(value, 'white')}]{value}[/]"


_DIGEST = re.compile(r"\b(sha256:)?([0-9a-f]{12})[0-9a-f]{20,}\b")


def _compact(value: Any) -> str:
    """A lineage value on one short line: dicts as ``k=v``, long hex digests cut to 12 digits."""
    if isinstance(value, dict):
        text = " ".join(f"{k}={_compact(v)}" for k, v in sorted(value.items())) or "-"
    else:
        text = number(value)
    return _DIGEST.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}…", text)


def number(value: Any) -> str:
    """A metric or parameter value, short: floats to 6 significant digits."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str | int | bool) or value is None:
        return str(value)
    return json.dumps(value, sort_keys=True)


@click.group()
def models() -> None:
    """The model registry: versions, aliases, the validation gate."""


@models.command("list")
@pass_env
def list_models(env: Env) -> None:
    """List registered models with their newest version and aliases."""
    from rich.markup import escape

    summaries = _registry(env).list_models()
    if not summaries:
        say("no models registered")
        return
    say("Registered models (times in UTC)")
    out = table("model", Col("versions", right=True), Col("latest", right=True), Col("champion", right=True),
                "updated", Col("other aliases", wrap=True))
    for m in summaries:
        others = ", ".join(f"{a}={v}" for a, v in sorted(m.aliases.items()) if a != "champion")
        champion = m.aliases.get("champion")
        out.add_row(escape(m.name), str(m.versions), str(m.latest), "-" if champion is None else str(champion),
                    when(m.updated_at), escape(others) or "-")
    console().print(out)


@models.command("show")
@click.argument("ref")
@click.option("--verify", is_flag=True, help="Read the artifact and check every file's checksum.")
@pass_env
def show(env: Env, ref: str, verify: bool) -> None:
    """Show a version: NAME (newest), NAME:VERSION or NAME@ALIAS.

    Prints its status, artifact, signature, metrics, parameters, lineage and the
    model's alias history; with --verify, also checks the artifact's files (exit 1 when
    one is missing or corrupt).
    """
    from rich.markup import escape

    reg = _registry(env)
    mv = reg.resolve(ref)
    aliases = [a.alias for a in reg.aliases(mv.name) if a.version == mv.version]
    say(f"[bold]{escape(mv.name)}[/] version {mv.version}  {status(mv.status)}"
        + (f"  aliases: {escape(', '.join(aliases))}" if aliases else ""))
    say(f"author: {escape(mv.author or '-')}  created: {when(mv.created_at)} UTC")
    if mv.status_by:
        say(f"{mv.status} by {escape(mv.status_by)} at {when(mv.status_at)} UTC: {escape(mv.status_reason)}")
    say(f"artifact: {escape(mv.artifact_uri)} ({mv.format}, sha256 {mv.checksum[:12]})")
    if verify:
        from headwater.ml.artifacts import ArtifactError

        try:
            manifest = reg.verify(mv.ref)
        except ArtifactError as exc:
            say(f"[bold red]artifact check failed:[/] {escape(exc.message)}")
            if exc.hint:
                say(f"[yellow]hint:[/] {escape(exc.hint)}")
            raise SystemExit(1) from exc
        packages = ", ".join(f"{k} {v}" for k, v in sorted(manifest.get("packages", {}).items()))
        say(f"artifact check: [green]ok[/], {len(manifest['files']) + 1} files match ({escape(packages)})")
    _signature(mv)
    _metrics(mv)
    if mv.params:
        say("\n[bold]parameters[/]")
        for key, value in sorted(mv.params.items()):
            say(f"  {escape(key)} = {escape(number(value))}")
    if mv.lineage:
        say("\n[bold]lineage[/]")
        for key, value in sorted(mv.lineage.items()):
            if isinstance(value, dict) and value:
                say(f"  {escape(key)}:")
                for sub, inner in sorted(value.items()):
                    say(f"    {escape(str(sub))}: {escape(_compact(inner))}")
            else:
                say(f"  {escape(key)}: {escape(_compact(value))}")
    history = reg.alias_history(mv.name)
    if history:
        say(f"\n[bold]alias history of {escape(mv.name)}[/] (UTC)")
        out = table("when", "alias", "move", "who", Col("why", wrap=True))
        for h in history:
            move = f"{'-' if h.from_version is None else h.from_version} -> {h.to_version}"
            out.add_row(when(h.moved_at), escape(h.alias), move, escape(h.who), escape(h.why))
        console().print(out)


def _signature(mv: ModelVersion) -> None:
    from rich.markup import escape

    sig = mv.signature
    if not sig:
        return
    say("\n[bold]signature[/]")
    rows = [(role, c) for role in ("inputs", "outputs") for c in sig.get(role) or [] if isinstance(c, dict)]
    if not rows:
        say(f"  {escape(json.dumps(sig, sort_keys=True))}")
        return
    out = table("", "column", "dtype")
    for role, col in rows:
        out.add_row(role[:-1], escape(str(col.get("name", "?"))), escape(str(col.get("dtype", "?"))))
    console().print(out)
    features = sig.get("features")
    if isinstance(features, list) and features:
        names = [str(f.get("name", "?")) if isinstance(f, dict) else str(f) for f in features]
        shown = ", ".join(names[:8]) + (f" (+{len(names) - 8} more)" if len(names) > 8 else "")
        say(f"features ({len(names)}): {escape(shown)}")
    if sig.get("task"):
        say(f"task: {escape(str(sig['task']))}"
            + (f"  classes: {escape(number(sig['classes']))}" if sig.get("classes") is not None else ""))


# Kept in metrics by the training helper, but not metrics to compare: shown apart.
_NOT_METRICS = ("importances", "timings")


def _metric_rows(mv: ModelVersion) -> dict[tuple[str, str], Any]:
    """Numeric metrics by (split, metric); nested groups (``baseline`` -> ``test``) join with a space."""
    rows: dict[tuple[str, str], Any] = {}

    def walk(prefix: str, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, dict):
                walk(f"{prefix} {key}".strip(), value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                rows[(prefix, key)] = value

    walk("", {k: v for k, v in mv.metrics.items() if k not in _NOT_METRICS})
    return rows


def _metrics(mv: ModelVersion) -> None:
    from rich.markup import escape

    rows = _metric_rows(mv)
    if rows:
        say("\n[bold]metrics[/]")
        out = table("split", "metric", Col("value", right=True))
        for (split, metric), value in sorted(rows.items()):
            out.add_row(escape(split), escape(metric), escape(number(value)))
        console().print(out)
    imp = mv.metrics.get("importances")
    imp = imp if isinstance(imp, dict) else {}
    values = imp.get("values")
    if isinstance(values, dict) and values:
        top = sorted(values.items(), key=lambda kv: -abs(kv[1]) if isinstance(kv[1], int | float) else 0)[:10]
        say(f"\n[bold]importances[/] ({escape(str(imp.get('method', '?')))}, top {len(top)} of {len(values)})")
        for name, value in top:
            say(f"  {escape(name)} {escape(number(value))}")
    timings = mv.metrics.get("timings")
    if isinstance(timings, dict) and timings:
        from headwater.cli.output import seconds

        parts = [f"{k} {seconds(v)}" for k, v in timings.items() if isinstance(v, int | float)]
        say(f"\n[bold]timings[/]: {escape(', '.join(parts))}")


@models.command("approve")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@_reason
@_who
@click.option("--force", is_flag=True, help="Overrule an earlier rejection.")
@pass_env
def approve(env: Env, name: str, version: int, reason: str, who: str | None, force: bool) -> None:
    """Approve a version, without moving any alias."""
    mv = _registry(env).approve(name, version, who=_user(who), reason=reason, force=force)
    say(f"{mv.name} version {mv.version} is {status(mv.status)}")


@models.command("promote")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@_reason
@_who
@click.option("--force", is_flag=True, help="Overrule an earlier rejection.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_env
def promote(env: Env, name: str, version: int, reason: str, who: str | None, force: bool, yes: bool) -> None:
    """Approve a version and make it champion (asks first)."""
    from headwater.ml.registry import AliasNotFoundError

    reg = _registry(env)
    mv = reg.get(name, version)
    try:
        current: int | None = reg.resolve(f"{name}@champion").version
    except AliasNotFoundError:
        current = None
    now = "no champion yet" if current is None else f"champion now: version {current}"
    if not yes and not click.confirm(f"promote {name} version {mv.version} to champion ({now})?", default=False):
        raise SystemExit(1)
    reg.promote(name, version, who=_user(who), reason=reason, force=force)
    say(f"{name} version {version} is {status('approved')} and champion"
        + ("" if current is None else f" (was version {current})"))


@models.command("reject")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@_reason
@_who
@pass_env
def reject(env: Env, name: str, version: int, reason: str, who: str | None) -> None:
    """Reject a version; it stays registered, with the reason.

    A rejected version cannot become champion unless promoted with --force.
    """
    mv = _registry(env).reject(name, version, who=_user(who), reason=reason)
    say(f"{mv.name} version {mv.version} is {status(mv.status)}")


@models.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", type=click.IntRange(min=1))
@_reason
@_who
@pass_env
def alias(env: Env, name: str, alias: str, version: int, reason: str, who: str | None) -> None:
    """Point an alias at a version (champion: approved only)."""
    move = _registry(env).set_alias(name, alias, version, who=_user(who), why=reason)
    was = "new" if move.from_version is None else f"was version {move.from_version}"
    say(f"{name}@{alias} -> version {move.to_version} ({was})")


@models.command("compare")
@click.argument("name")
@click.argument("v1", type=click.IntRange(min=1))
@click.argument("v2", type=click.IntRange(min=1))
@click.option("--all", "show_all", is_flag=True, help="Also the baseline metrics (the mean predictor's).")
@pass_env
def compare(env: Env, name: str, v1: int, v2: int, show_all: bool) -> None:
    """Compare two versions' metrics and parameters.

    Metrics side by side with the change (green: better), then the parameters that differ.
    """
    from rich.markup import escape

    from headwater.ml.registry import LOWER_IS_BETTER

    reg = _registry(env)
    a, b = reg.get(name, v1), reg.get(name, v2)
    say(f"[bold]{escape(name)}[/]: version {v1} {status(a.status)} vs version {v2} {status(b.status)}")
    ra, rb = _metric_rows(a), _metric_rows(b)
    if not show_all:
        ra, rb = ({k: v for k, v in rows.items() if not k[0].startswith("baseline")} for rows in (ra, rb))
    if ra or rb:
        out = table("split", "metric", Col(f"v{v1}", right=True), Col(f"v{v2}", right=True),
                    Col("change", right=True))
        for key in sorted(set(ra) | set(rb)):
            x, y = ra.get(key), rb.get(key)
            out.add_row(escape(key[0]), escape(key[1]), escape(number(x) if key in ra else "-"),
                        escape(number(y) if key in rb else "-"), _change(key[1], x, y, LOWER_IS_BETTER))
        console().print(out)
    else:
        say("neither version has metrics")
    keys = sorted(k for k in set(a.params) | set(b.params) if a.params.get(k) != b.params.get(k))
    if keys:
        say("\n[bold]parameters that differ[/]")
        out = table("parameter", Col(f"v{v1}", wrap=True), Col(f"v{v2}", wrap=True))
        for k in keys:
            out.add_row(escape(k), escape(number(a.params.get(k, "-"))), escape(number(b.params.get(k, "-"))))
        console().print(out)
    for split in sorted({s for s, _ in ra} & {s for s, _ in rb} - {""}):
        ha, hb = a.data_hash(split), b.data_hash(split)
        if ha != hb:
            say(f"[yellow]note:[/] the {escape(split)} split differs (data hash {ha and ha[:12]} vs "
                f"{hb and hb[:12]}): its metrics are not directly comparable")


def _change(metric: str, x: Any, y: Any, lower_better: frozenset[str]) -> str:
    """``y - x`` and its relative size, green when it is an improvement, red when worse."""
    numeric = (int, float)
    if not (isinstance(x, numeric) and isinstance(y, numeric)) or isinstance(x, bool) or isinstance(y, bool):
        return "-"
    diff = float(y) - float(x)
    text = (f"{diff:+,.0f}" if 100 <= abs(diff) < 1e9 else f"{diff:+.4g}") + (f" ({diff / abs(x):+.1%})" if x else "")
    if diff == 0:
        return text
    better = (diff < 0) if metric.lower() in lower_better else (diff > 0)
    return f"[{'green' if better else 'red'}]{text}[/]"


@models.command("score")
@click.argument("ref")
@click.argument("input_file", metavar="INPUT")
@click.argument("output_file", metavar="OUTPUT")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Rows read and scored at a time (memory is bounded by this, not by the file).")
@click.option("--output-column", default="prediction", show_default=True, help="Column of the predictions.")
@click.option("--rejects", default=None, help="Where rows that do not fit the signature go [OUTPUT.rejects.csv].")
@pass_env
def score(env: Env, ref: str, input_file: str, output_file: str, chunk_rows: int, output_column: str,
          rejects: str | None) -> None:
    """Score a CSV or Parquet file (path or fsspec URL) with NAME@ALIAS or NAME:VERSION.

    OUTPUT gets the input columns, the prediction and model_version; it appears only once
    the whole file is scored. Rows that do not fit the model's signature go to the
    rejects file with the reason.
    """
    from rich.markup import escape

    from headwater.ml.batch import score_file

    out = console()
    progress: Any = None
    if out.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        progress = Progress(SpinnerColumn(), TextColumn("scoring {task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("rows"), TimeElapsedColumn(), console=out,
                            transient=True)
    bar: Any = None

    def on_progress(rows: int, total: int | None) -> None:
        nonlocal bar
        if progress is None:
            return
        if bar is None:
            bar = progress.add_task(escape(input_file), total=total)
        progress.update(bar, completed=rows)

    with progress if progress is not None else _nothing():
        summary = score_file(ref, input_file, output_file, registry=_registry(env), chunk_rows=chunk_rows,
                             output_column=output_column, rejects=rejects, on_progress=on_progress)
    rate = summary.rows_in / summary.seconds if summary.seconds > 0 else 0.0
    say(f"scored {summary.rows_scored:,} of {summary.rows_in:,} rows with [bold]{escape(summary.model_version)}[/] "
        f"in {summary.seconds:.1f} s ({rate:,.0f} rows/s, {summary.chunks} chunk(s)) -> {escape(summary.output)}")
    if summary.rows_rejected:
        say(f"[yellow]{summary.rows_rejected:,} row(s) rejected[/] (do not fit the model's signature) -> "
            f"{escape(summary.rejects or '')}")


def _nothing() -> Any:
    import contextlib

    return contextlib.nullcontext()

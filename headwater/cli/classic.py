"""``headwater run module.Task``: a Luigi-style task and what it requires, in one go."""

from __future__ import annotations

import click

from headwater.cli.env import Env
from headwater.cli.output import Col, console, say, state, table


@click.command("run", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("task_ref")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: $HEADWATER_PARALLELISM or CPUs).")
@click.option("--force", is_flag=True, help="Run tasks even when their outputs already exist.")
@click.pass_context
def run_classic(ctx: click.Context, task_ref: str, workers: int | None, force: bool) -> None:
    """Run a Luigi-style task class and what it requires: `headwater run module.Task --param x`.

    Tasks whose outputs all exist are not run ("already complete"); exit 1 if one fails.
    """
    from rich.markup import escape

    from headwater.cli.dags import report_problems
    from headwater.cli.running import make_executor, run_scheduler
    from headwater.clock import utcnow
    from headwater.orchestration.classic import build_dag, parse_task_ref
    from headwater.orchestration.classic import task_ref as classic_task_ref
    from headwater.orchestration.runs import trigger
    from headwater.orchestration.runtime import ALREADY_COMPLETE
    from headwater.orchestration.scheduler import SchedulerOptions
    from headwater.orchestration.states import RunState

    env: Env = ctx.ensure_object(Env)
    root = parse_task_ref(task_ref, list(ctx.args))
    dag = build_dag(root, force=force)
    spec = dag.to_spec(fileloc=f"classic:{classic_task_ref(type(root))}")
    store = env.store
    record = store.upsert_dag(spec)
    run = trigger(store, record, utcnow(), conf=root.to_str_params())
    options = SchedulerOptions(only_runs={(spec.dag_id, run.run_id)}, take_lease=False, force=force)
    ex = make_executor("local", workers or env.settings.parallelism)
    report = run_scheduler(env, ex, options, total_tasks=len(spec.tasks), description=task_ref)
    tis = store.list_task_instances(spec.dag_id, run.run_id)
    say(escape(task_ref))
    out = table("task", "state", Col("note", wrap=True))
    order = {tid: i for i, tid in enumerate(spec.topological_order())}
    for ti in sorted(tis, key=lambda t: order.get(t.task_id, 0)):
        out.add_row(escape(ti.task_id), state(ti.state.value), escape(ti.reason))
    console().print(out)
    report_problems(tis)
    complete = sum(1 for ti in tis if ti.reason == ALREADY_COMPLETE)
    ran = sum(1 for ti in tis if ti.state.value == "success") - complete
    final = report.finished.get((spec.dag_id, run.run_id))
    say(f"{ran} task(s) ran, {complete} already complete; run {state(final.value if final else 'unfinished')}")
    if final is not RunState.SUCCESS:
        raise SystemExit(1)

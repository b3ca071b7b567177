"""The command line's view of executions: `rollway executions [--watch]`, `rollway describe ID`, `rollway logs ID`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from api import render
from api.client import Client, resolve_execution
from orchestrator.status import TERMINAL

ENDED = frozenset(status.value for status in TERMINAL)


def client_of(ctx: click.Context) -> Client:
    """The API client the top group's --url and ROLLWAY_API_TOKEN name."""
    return Client(ctx.obj["url"], ctx.obj.get("token"))


Command = TypeVar("Command", bound=Callable[..., Any])
Rows = list[dict[str, Any]]


def output_option(function: Command) -> Command:
    """The `-o table|json|yaml` option."""
    return click.option(
        "-o", "--output", type=click.Choice(render.OUTPUTS), default="table", show_default=True, help="how to print"
    )(function)


def _params(project: str | None, pipeline: str | None, status: str | None, limit: int) -> dict[str, Any]:
    given = {"project": project, "pipeline": pipeline, "status": status}
    return {"limit": limit} | {name: value for name, value in given.items() if value}


@click.command()
@click.option("--project", default=None, help="only this project's")
@click.option("--pipeline", default=None, help="only this pipeline's (name or id)")
@click.option("--status", default=None, help="only these statuses, comma-separated (RUNNING,QUEUED)")
@click.option("--limit", default=20, show_default=True, type=int)
@output_option
@click.option("--wide", is_flag=True, help="whole ids and messages, the project and when each was created")
@click.option("-w", "--watch", is_flag=True, help="print the table again whenever it changes, until interrupted")
@click.option("--interval", default=1.0, show_default=True, type=float, help="seconds between looks with --watch")
@click.option("--until-done", is_flag=True, help="with --watch: stop once every execution listed has ended")
@click.option("--count", default=None, type=int, help="with --watch: stop after printing the table this many times")
@click.pass_context
def executions(
    ctx: click.Context,
    project: str | None,
    pipeline: str | None,
    status: str | None,
    limit: int,
    output: str,
    wide: bool,
    watch: bool,
    interval: float,
    until_done: bool,
    count: int | None,
) -> None:
    """List executions, newest first; messages are cut to one short line unless --wide."""
    client = client_of(ctx)
    params = _params(project, pipeline, status, limit)

    def shown(rows: Rows) -> str:
        return render.shown(rows, output, lambda items: render.executions_table(items, wide))

    if not watch:
        click.echo(shown(client.rows("/api/executions", params=params)))
        return
    try:
        _watch(client, params, shown, interval, until_done, count)
    except KeyboardInterrupt:  # the way a watch ends: quietly, like `watch` and `kubectl get -w`
        return


def _watch(
    client: Client,
    params: dict[str, Any],
    shown: Callable[[Rows], str],
    interval: float,
    until_done: bool,
    count: int | None,
) -> None:
    """Print the executions each time what would be printed changes."""
    last, printed = None, 0
    while True:
        rows = client.rows("/api/executions", params=params)
        text = shown(rows)
        if text != last:
            click.echo(("\n" if printed else "") + f"-- {time.strftime('%H:%M:%S')}\n{text}")
            last, printed = text, printed + 1
        if count is not None and printed >= count:
            return
        if until_done and all(row["status"] in ENDED for row in rows):
            return
        time.sleep(interval)


@click.command()
@click.argument("execution_id")
@output_option
@click.pass_context
def describe(ctx: click.Context, execution_id: str, output: str) -> None:
    """Describe an execution by id (or a unique start of one): its stages and tasks in order, with status, times,
    attempts and errors, its rollback and child executions, and its history."""
    client = client_of(ctx)
    full = resolve_execution(client, execution_id)
    execution = client.object("GET", f"/api/executions/{full}")
    events = client.rows(f"/api/executions/{full}/events")
    if output == "table":
        click.echo(render.description(execution, events))
    else:
        click.echo(render.structured(execution | {"events": events}, output))


@click.command()
@click.argument("execution_id")
@click.option("-f", "--follow", is_flag=True, help="keep printing new entries until the execution ends")
@click.option("--interval", default=1.0, show_default=True, type=float, help="seconds between looks with -f")
@click.pass_context
def logs(ctx: click.Context, execution_id: str, follow: bool, interval: float) -> None:
    """An execution's history as log lines, oldest first: every status change of it and of its tasks."""
    client = client_of(ctx)
    full = resolve_execution(client, execution_id)
    seen = 0
    try:
        while True:
            # Read the status before the events: an execution seen ended has recorded all its events by then.
            ended = client.object("GET", f"/api/executions/{full}")["status"] in ENDED
            events = client.rows(f"/api/executions/{full}/events")
            for event in events[seen:]:
                click.echo(render.log_line(event))
            seen = max(seen, len(events))
            if not follow or ended:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return

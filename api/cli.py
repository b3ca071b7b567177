"""The `rollway` command line: servers (serve, worker) and the API from a terminal (apply, run, executions,
approve, reject, cancel, pause, resume, rollback, rerun)."""

from __future__ import annotations

import ipaddress
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from api import cli_catalog, cli_executions
from api.cli_executions import client_of
from api.cli_import import import_group
from api.client import Client, resolve_execution
from orchestrator.cdtemplate import MODELS, request_body
from orchestrator.document import DEFAULT_PROJECT
from orchestrator.errors import RollwayError
from orchestrator.settings import Settings
from workers.constants import QUEUES

TERMINAL = {"COMPLETED", "FAILED", "CANCELED", "ROLLBACK_COMPLETED", "ROLLBACK_FAILED"}


def _client(ctx: click.Context) -> Client:
    return client_of(ctx)


class _Commands(click.Group):
    """Rollway's commands: a Rollway or API error prints as one line and exits 1, never as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RollwayError as error:
            raise click.ClickException(error.message) from error
        except KeyError as error:  # an answer lacking a field every Rollway answer has: another server answered
            url = (ctx.obj or {}).get("url", "the API")
            raise click.ClickException(f"{url} answered without the field {error}: is it the Rollway API?") from error


@click.group(cls=_Commands)
@click.option("--url", envvar="ROLLWAY_URL", default="http://127.0.0.1:8080", show_default=True, help="the API")
@click.pass_context
def cli(ctx: click.Context, url: str) -> None:
    """Rollway: continuous delivery to Kubernetes with automatic rollback.

    Ids (of executions, user operations, tokens) may be given as a unique start of one.

    \b
    Settings from the environment:
      ROLLWAY_URL             the API the client commands call (as --url)
      ROLLWAY_API_TOKEN       client commands: the bearer token; serve: the bootstrap admin token
      ROLLWAY_DATABASE_URL    sqlite:// or postgresql:// (default: a SQLite file under $XDG_DATA_HOME/rollway)
      ROLLWAY_REDIS_URL       the broker and result backend (redis://)
      ROLLWAY_REDIS_PREFIX    a prefix of Rollway's Redis keys and queues
      ROLLWAY_SECRET_KEY      seals endpoint credentials and secret variables at rest
      ROLLWAY_SECRET_KEY_OLD  comma-separated keys that still open what they sealed (rotation)
      ROLLWAY_SWEEP_SECONDS   how often the sweep runs (default 15)
      ROLLWAY_LEASE_SECONDS   how long a claimed task run may go without a heartbeat (default 60)
      ROLLWAY_EGRESS_DENY     CIDRs REST and POLL tasks may not reach (none: every address)
    """
    ctx.ensure_object(dict)
    ctx.obj["url"] = url
    ctx.obj["token"] = os.environ.get("ROLLWAY_API_TOKEN") or None


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option(
    "--threads", default=8, show_default=True, type=int, help="requests served at once (a third may be live pages)"
)
def serve(host: str, port: int, threads: int) -> None:
    """Serve the API; on anything but loopback only with ROLLWAY_API_TOKEN set."""
    import waitress

    from api.app import create_app
    from orchestrator import defaults

    settings = Settings.from_env()
    if settings.api_token is None and not is_loopback(host):
        raise click.ClickException(
            f"refusing to serve on {host} without ROLLWAY_API_TOKEN: anyone who can reach the port could run "
            "pipelines and read the cluster endpoints. Set ROLLWAY_API_TOKEN, or serve on 127.0.0.1."
        )
    app = create_app(settings, live_streams=max(1, threads // 3))
    click.echo(f"rollway API on http://{host}:{port}/api")
    # Waitress refuses a body of max_request_body_size bytes or more, Flask one of more than MAX_CONTENT_LENGTH:
    # one more byte here makes both draw the line at the same size.
    waitress.serve(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="rollway",
        max_request_body_size=defaults.MAX_REQUEST_BYTES + 1,
    )


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine: localhost, 127.0.0.0/8 or ::1 (a bare name may resolve anywhere)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@cli.command()
@click.option("--redis/--no-redis", default=True, help="use Redis on localhost if it answers (default) or never")
def demo(redis: bool) -> None:
    """Run a release that succeeds and one that rolls back by itself, on embedded defaults."""
    from api.demo import run_demo

    sys.exit(run_demo(click.echo, use_redis=redis))


@cli.command()
@click.option("-Q", "--queues", default=",".join(QUEUES), show_default=True, help="comma-separated queues")
@click.option("-c", "--concurrency", default=None, type=int, help="worker processes (default: CPU count)")
@click.option("-l", "--loglevel", default="INFO", show_default=True)
@click.option("-B", "--beat", "with_beat", is_flag=True, help="also run the sweep's beat (one machine only)")
def worker(queues: str, concurrency: int | None, loglevel: str, with_beat: bool) -> None:
    """Run a Celery worker on some or all of Rollway's queues."""
    from orchestrator.store import require_current_schema
    from workers.celery_app import make_celery

    unknown = sorted(set(queues.split(",")) - set(QUEUES))
    if unknown:
        raise click.BadParameter(f"unknown queue(s) {', '.join(unknown)}; Rollway's are {', '.join(QUEUES)}")
    argv = ["worker", "-Q", queues, f"--loglevel={loglevel}", "-n", f"rollway-{os.getpid()}@%h"]
    if concurrency:
        argv += ["-c", str(concurrency)]
    if with_beat:
        argv += ["--beat"]
    settings = Settings.from_env()
    require_current_schema(settings)  # before Celery starts: an old schema stops the worker at once, not per task
    make_celery(settings).worker_main(argv)


@cli.command()
@click.option("-l", "--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run the periodic sweep (Celery beat): re-sends what was not sent, reclaims lost task runs, enforces
    timeouts, starts queued executions. Two beats at once do no harm."""
    from orchestrator.store import require_current_schema
    from workers.celery_app import make_celery

    settings = Settings.from_env()
    require_current_schema(settings)
    click.echo(f"rollway beat: a sweep every {settings.sweep_seconds:g} s")
    make_celery(settings).Beat(loglevel=loglevel).run()


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def flower(ctx: click.Context) -> None:
    """Run Flower on Rollway's broker and ROLLWAY_REDIS_PREFIX; other options go to Flower (e.g. --port=5555)."""
    from workers.flower import run_flower

    sys.exit(run_flower(Settings.from_env(), ctx.args))


@cli.group()
def db() -> None:
    """The database schema: serve and worker start only on the revision this Rollway needs."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to this Rollway's revision (run it before serve and worker)."""
    from orchestrator.store import upgrade_schema

    before, after = upgrade_schema(Settings.from_env())
    click.echo(f"database schema: revision {before or 'none'} -> {after}")


@db.command("rotate-key")
def db_rotate_key() -> None:
    """Re-seal every stored secret under ROLLWAY_SECRET_KEY; what ROLLWAY_SECRET_KEY_OLD sealed still opens."""
    from orchestrator.rekey import reseal_all
    from orchestrator.store import Store

    settings = Settings.from_env()
    if settings.secret_key is None:
        raise click.ClickException("ROLLWAY_SECRET_KEY is not set: there is no key to re-seal the credentials under")
    store = Store.connect(
        settings.database_url, settings.secret_key, old_secret_keys=settings.secret_key_old, migrate=False
    )
    try:
        counts = reseal_all(store)
    finally:
        store.dispose()
    summary = ", ".join(f"{count} {what}(s)" for what, count in counts.items())
    click.echo(f"re-sealed under ROLLWAY_SECRET_KEY: {summary}")
    if settings.secret_key_old:
        # A server still on the old key would seal new credentials under it: drop the old key only after all moved.
        click.echo("once every server and worker runs with this ROLLWAY_SECRET_KEY, ROLLWAY_SECRET_KEY_OLD can go")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True}, add_help_option=False)
@click.pass_context
def kubesim(ctx: click.Context) -> None:
    """A standalone Kubernetes API emulator; prints its URL (`rollway kubesim --help` for its options)."""
    from kubesim.cli import main as kubesim_main

    sys.exit(kubesim_main(list(ctx.args)))


def _inputs(pairs: tuple[str, ...]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--input")
        values[name] = value
    return values


@cli.command()
@click.argument("name")
@click.option("--input", "-i", "pairs", multiple=True, help="NAME=VALUE, repeatable")
@click.option("--comments", default="")
@click.option("--project", default=None)
@click.option("--wait/--no-wait", default=False, help="wait for the execution to end; exit 1 unless COMPLETED")
@click.option("--timeout", default=3600.0, show_default=True, help="seconds --wait waits before giving up")
@click.option("--force", is_flag=True, help="start it even though its rollback could not run (recorded)")
@click.pass_context
def run(
    ctx: click.Context,
    name: str,
    pairs: tuple[str, ...],
    comments: str,
    project: str | None,
    wait: bool,
    timeout: float,
    force: bool,
) -> None:
    """Run a pipeline by name."""
    client = _client(ctx)
    pipeline = client.find_pipeline(name, project)
    if pipeline is None:
        raise click.ClickException(f"there is no pipeline named '{name}'")
    body = {"input": _inputs(pairs), "comments": comments} | ({"force": True} if force else {})
    answer = client.call("POST", f"/api/pipelines/{pipeline['id']}/executions", json=body)
    click.echo(f"execution {name} #{answer['executionIndex']} {answer['executionId']} {answer['status']}")
    if wait:
        final = _wait(client, answer["executionId"], timeout)
        click.echo(f"execution {name} #{final['index']} {final['status']} {final['statusMessage']}".rstrip())
        sys.exit(0 if final["status"] == "COMPLETED" else 1)


def _wait(client: Client, execution_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        execution: dict[str, Any] = client.call("GET", f"/api/executions/{execution_id}")
        if execution["status"] in TERMINAL:
            return execution
        time.sleep(0.5)
    raise click.ClickException(f"execution {execution_id} did not end within {timeout:g}s; it goes on running")


@cli.group()
def template() -> None:
    """Generate pipelines from templates."""


@template.command("cd")
@click.option("--project", default=DEFAULT_PROJECT, show_default=True)
@click.option("--name", required=True, help="the pipeline; its rollbacks are NAME_Dev_Rollback, NAME_Prod_Rollback")
@click.option("-f", "--file", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--service", required=True, help="the Service of the YAML that releases go through")
@click.option("--dev-endpoint", required=True, help="the Kubernetes endpoint of Development")
@click.option("--prod-endpoint", required=True, help="the Kubernetes endpoint of Production")
@click.option("--model", type=click.Choice(MODELS), default=MODELS[0], show_default=True)
@click.option(
    "--health-check-url",
    required=True,
    help="the application's health path (such as /healthz, polled through each cluster) or an absolute URL",
)
@click.option("--rollback/--no-rollback", default=True, show_default=True, help="generate rollback pipelines")
@click.pass_context
def template_cd(
    ctx: click.Context,
    project: str,
    name: str,
    path: Path,
    service: str,
    dev_endpoint: str,
    prod_endpoint: str,
    model: str,
    health_check_url: str,
    rollback: bool,
) -> None:
    """Generate a release pipeline (created disabled) and its rollback pipelines from a Kubernetes YAML."""
    body = request_body(
        project=project,
        name=name,
        kubernetes_yaml=path.read_text(encoding="utf-8", errors="replace"),
        service=service,
        endpoints={"dev": dev_endpoint, "prod": prod_endpoint},
        model=model,
        health_check_url=health_check_url,
        rollback=rollback,
    )
    answer = _client(ctx).call("POST", "/api/templates/cd", json=body)
    for item in [answer["pipeline"], *answer["rollbackPipelines"]]:
        note = "" if item["enabled"] else ", disabled: review it, then enable it"
        click.echo(f"pipeline {item['project']}/{item['name']} created ({item['id']}){note}")


@cli.group()
def token() -> None:
    """Make, list and revoke API tokens (an admin's token is needed)."""


@token.command("create")
@click.argument("name")
@click.option("--project", default=None, help="the project it acts in (default: your token's own)")
@click.option("--role", type=click.Choice(["admin", "developer", "executor", "viewer"]), required=True)
@click.pass_context
def token_create(ctx: click.Context, name: str, project: str | None, role: str) -> None:
    """Make a token; it is printed this once and cannot be read again."""
    body = {"name": name, "role": role} | ({"project": project} if project else {})
    made = _client(ctx).call("POST", "/api/tokens", json=body)
    click.echo(f"token {made['name']} ({made['role']} of project {made['project']}, id {made['id']}):", err=True)
    click.echo(made["token"])


@token.command("list")
@click.option("--project", default=None)
@click.pass_context
def token_list(ctx: click.Context, project: str | None) -> None:
    """The tokens you may manage: never their secrets."""
    rows = _client(ctx).rows("/api/tokens", params={"project": project} if project else {})
    header = ("ID", "NAME", "PROJECT", "ROLE", "CREATED BY", "LAST USED")
    table = [header] + [
        (row["id"], row["name"], row["project"], row["role"], row["createdBy"], row["lastUsedAt"] or "never")
        for row in rows
    ]
    widths = [max(len(str(line[column])) for line in table) for column in range(len(header))]
    for line in table:
        click.echo("  ".join(str(value).ljust(width) for value, width in zip(line, widths, strict=True)).rstrip())


@token.command("revoke")
@click.argument("token_id")
@click.pass_context
def token_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke a token by id (or a unique start of one): every later request with it is refused."""
    client = _client(ctx)
    full = client.resolve_token(token_id)
    client.call("DELETE", f"/api/tokens/{full}")
    click.echo(f"token {full} revoked")


def _answer(ctx: click.Context, operation_id: str, action: str, comments: str) -> None:
    client = _client(ctx)
    full = client.resolve_user_operation(operation_id)
    answered = client.call("POST", f"/api/user-operations/{full}", json={"action": action, "comments": comments})
    where = f"{answered['pipeline']} #{answered['executionIndex']} {answered['stage']}.{answered['task']}"
    click.echo(f"user operation {answered['id']} ({where}) {answered['status']} by {answered['respondedBy']}")


@cli.command()
@click.argument("operation_id")
@click.option("--comments", default="", help="why: recorded with the answer and in the task's output")
@click.pass_context
def approve(ctx: click.Context, operation_id: str, comments: str) -> None:
    """Approve a waiting user operation by id (or a unique start of one): its run goes on."""
    _answer(ctx, operation_id, "approve", comments)


@cli.command()
@click.argument("operation_id")
@click.option("--comments", default="", help="why: the task fails naming you and this, and its stage rolls back")
@click.pass_context
def reject(ctx: click.Context, operation_id: str, comments: str) -> None:
    """Reject a waiting user operation by id (or a unique start of one): its task fails and its stage rolls back."""
    _answer(ctx, operation_id, "reject", comments)


def _control(ctx: click.Context, execution_id: str, verb: str) -> None:
    """POST /api/executions/<id>/<verb> for an id or a unique start of one, and print what it answered."""
    client = _client(ctx)
    full = resolve_execution(client, execution_id)
    answer = client.call("POST", f"/api/executions/{full}/{verb}")
    if "executionId" in answer:  # a rerun answers the new execution
        click.echo(f"execution #{answer['executionIndex']} {answer['executionId']} started ({verb} of {full})")
        return
    line = f"execution {answer['pipeline']} #{answer['index']} {answer['id']} {answer['status']}"
    click.echo(f"{line} {answer['statusMessage']}".rstrip())


@cli.command()
@click.argument("execution_id")
@click.pass_context
def cancel(ctx: click.Context, execution_id: str) -> None:
    """Cancel an execution by id (or a unique start of one): nothing more of it starts."""
    _control(ctx, execution_id, "cancel")


@cli.command()
@click.argument("execution_id")
@click.pass_context
def pause(ctx: click.Context, execution_id: str) -> None:
    """Pause an execution by id (or a unique start of one): nothing new starts, running tasks finish."""
    _control(ctx, execution_id, "pause")


@cli.command()
@click.argument("execution_id")
@click.pass_context
def resume(ctx: click.Context, execution_id: str) -> None:
    """Resume a paused execution by id (or a unique start of one)."""
    _control(ctx, execution_id, "resume")


@cli.command()
@click.argument("execution_id")
@click.pass_context
def rollback(ctx: click.Context, execution_id: str) -> None:
    """Roll back a completed or failed execution by hand: the rollback pipelines of the stages it deployed run."""
    _control(ctx, execution_id, "rollback")


@cli.command()
@click.argument("execution_id")
@click.pass_context
def rerun(ctx: click.Context, execution_id: str) -> None:
    """Start a new execution of the same pipeline with the same input."""
    _control(ctx, execution_id, "rerun")


for _command in (*cli_catalog.COMMANDS, cli_executions.executions, cli_executions.describe, cli_executions.logs):
    cli.add_command(_command)
cli.add_command(import_group)


def main() -> None:
    """Entry point of the `rollway` console script."""
    cli()

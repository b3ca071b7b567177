"""The command line's view of what executions run on: pipelines (`apply`, `pipelines`, `enable`, `disable`, `export`)
and endpoints (`endpoints create|list`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import yaml

from api import render
from api.cli_executions import client_of, output_option
from orchestrator.endpoints import ENDPOINT_TYPES, KUBERNETES

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _documents(path: Path) -> list[Any]:
    try:
        documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise click.ClickException(f"{path} is not valid YAML: {' '.join(str(error).split())}") from error
    if not documents:
        raise click.ClickException(f"{path} holds no documents")
    return documents


@click.command()
@click.option("-f", "--file", "path", required=True, type=FILE, help="a YAML file of one or more pipelines")
@click.option("--dry-run", is_flag=True, help="validate the whole file and say what would change; save nothing")
@click.pass_context
def apply(ctx: click.Context, path: Path, dry_run: bool) -> None:
    """Create or update the pipelines of a YAML file, all of them or none.

    \b
    The file holds one or more documents (separated by ---), each a pipeline (kind: PIPELINE, Rollway's export
    shape); other kinds are refused. A pipeline is matched by project and name: a new one is created, an existing
    one replaced. Endpoints and variables are not applied from files (credentials stay out of them): make them
    first with `rollway endpoints create` and the API.

    \b
    All or nothing: the server validates every document, then saves them in one transaction. If any document has
    a problem, each problem is printed and nothing is saved (exit 1).
    Order does not matter: a rollback pipeline may come after the pipeline naming it; it is applied first.
    A document without `enabled` keeps the existing pipeline's (a new one is created disabled).
    A document without `project` goes to your token's project (or `default`).
    A pipeline that names an endpoint or variable that does not exist yet, or a task type Rollway does not run, is
    saved disabled, and each such warning is printed under it.
    """
    body = {"documents": _documents(path), "dryRun": dry_run}
    answer = client_of(ctx).object("POST", "/api/pipelines/apply", json=body)
    for item in answer.get("pipelines") or []:
        name = f"pipeline {item['project']}/{item['name']}"
        warnings = item.get("_warnings") or []
        lacking = f", disabled with {len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else ""
        if dry_run:
            verb = {"created": "would be created", "updated": "would be updated"}.get(item["action"], item["action"])
            click.echo(f"{name} {verb}" + (f" ({item['id']})" if item.get("id") else "") + lacking)
        else:
            click.echo(f"{name} {item['action']} ({item['id']}){lacking}")
        for warning in warnings:
            click.echo(f"  - {warning['path']}: {warning['message']}")
    if dry_run:
        click.echo("dry run: the file is valid; nothing was saved")


@click.command()
@click.option("--project", default=None)
@output_option
@click.pass_context
def pipelines(ctx: click.Context, project: str | None, output: str) -> None:
    """List pipelines: project, name, whether enabled, stages."""
    rows = client_of(ctx).rows("/api/pipelines", params={"project": project} if project else {})
    click.echo(render.shown(rows, output, render.pipelines_table))


def _set_enabled(ctx: click.Context, name: str, project: str | None, enabled: bool) -> None:
    client = client_of(ctx)
    pipeline = client.pipeline(name, project)
    saved = client.object("PATCH", f"/api/pipelines/{pipeline['id']}", json={"enabled": enabled})
    state = "enabled" if saved["enabled"] else "disabled"
    click.echo(f"pipeline {saved['project']}/{saved['name']} {state} ({saved['id']})")


@click.command()
@click.argument("name")
@click.option("--project", default=None)
@click.pass_context
def enable(ctx: click.Context, name: str, project: str | None) -> None:
    """Enable a pipeline by name: it may be run."""
    _set_enabled(ctx, name, project, True)


@click.command()
@click.argument("name")
@click.option("--project", default=None)
@click.pass_context
def disable(ctx: click.Context, name: str, project: str | None) -> None:
    """Disable a pipeline by name: new runs are refused; running executions go on."""
    _set_enabled(ctx, name, project, False)


@click.command()
@click.argument("name")
@click.option("--project", default=None)
@click.pass_context
def export(ctx: click.Context, name: str, project: str | None) -> None:
    """Print a pipeline's document as YAML (secret values masked, as the API shows them), ready for `apply -f`."""
    client = client_of(ctx)
    pipeline = client.pipeline(name, project)
    click.echo(str(client.call("GET", f"/api/pipelines/{pipeline['id']}/export", text=True)).rstrip("\n"))


@click.group()
def endpoints() -> None:
    """The clusters and mail servers tasks use; credentials go in, never come out."""


def _secret(env_name: str, prompt: bool, what: str) -> str | None:
    """A credential from the environment variable `env_name`, else typed at a hidden prompt when asked for."""
    value = os.environ.get(env_name) or None
    if value is None and prompt:
        value = click.prompt(what, hide_input=True, default="", show_default=False) or None
    return value


@endpoints.command("create")
@click.argument("name")
@click.option("--project", default=None, help="default: your token's project")
@click.option("--type", "kind", type=click.Choice(ENDPOINT_TYPES), default=KUBERNETES, show_default=True)
@click.option("--url", required=False, help="the API server (kubernetes) or smtp://host:port")
@click.option("--token-env", default="ROLLWAY_ENDPOINT_TOKEN", show_default=True, help="variable holding the token")
@click.option("--ask-token", is_flag=True, help="type the token at a hidden prompt when --token-env is unset")
@click.option("--ca-file", type=FILE, default=None, help="PEM file of the CA that signed the server's certificate")
@click.option("--kubeconfig-file", type=FILE, default=None, help="a kubeconfig (instead of --url and a token)")
@click.option("--insecure", is_flag=True, help="do not verify the server's certificate")
@click.option("--restricted", is_flag=True, help="only runs an admin approved may use it")
@click.option("--username", default=None, help="smtp: the login")
@click.option("--password-env", default="ROLLWAY_ENDPOINT_PASSWORD", show_default=True, help="smtp: its variable")
@click.option("--ask-password", is_flag=True, help="smtp: type the password at a hidden prompt")
@click.option("--from", "sender", default=None, help="smtp: the sender address")
@click.option("--starttls", is_flag=True, help="smtp: upgrade the connection with STARTTLS")
@click.pass_context
def endpoints_create(ctx: click.Context, /, name: str, **given: Any) -> None:
    """Create an endpoint. Secrets never go on the command line: the token comes from $ROLLWAY_ENDPOINT_TOKEN (or
    the variable --token-env names) or a hidden prompt (--ask-token); an smtp password likewise."""
    body: dict[str, Any] = {"name": name, "type": given["kind"], "insecure": given["insecure"]}
    body |= {"restricted": True} if given["restricted"] else {}
    optional = {"project": given["project"], "url": given["url"], "username": given["username"]}
    optional |= {"from": given["sender"], "starttls": True if given["starttls"] else None}
    optional |= {"token": _secret(given["token_env"], given["ask_token"], "token")}
    optional |= {"password": _secret(given["password_env"], given["ask_password"], "password")}
    if given["ca_file"]:
        optional["caData"] = given["ca_file"].read_text(encoding="utf-8")
    if given["kubeconfig_file"]:
        optional["kubeconfig"] = given["kubeconfig_file"].read_text(encoding="utf-8")
    body |= {field: value for field, value in optional.items() if value is not None}
    made = client_of(ctx).object("POST", "/api/endpoints", json=body)
    held = render.credentials(made)
    click.echo(f"endpoint {made['project']}/{made['name']} created ({made['id']}), credentials: {held}")


@endpoints.command("list")
@click.option("--project", default=None)
@output_option
@click.pass_context
def endpoints_list(ctx: click.Context, project: str | None, output: str) -> None:
    """List endpoints: type, URL, which credentials each holds (never their values) and its last probe."""
    rows = client_of(ctx).rows("/api/endpoints", params={"project": project} if project else {})
    click.echo(render.shown(rows, output, render.endpoints_table))


COMMANDS = (apply, pipelines, enable, disable, export, endpoints)

"""`rollway import codestream FILE...`: Code Stream exports into Rollway, one report per file.

Each file is sent whole to `POST /api/pipelines/import`, which applies all of its pipelines or none (creating or
updating each by project and name, as `apply` does): a pipeline is saved, or saved disabled with the warnings that
keep it so (endpoints or variables missing, task types Rollway does not run); a file is refused with the API's
reasons. Files after a refused one are still imported; the command exits 1 when any file was refused.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from api.client import Client
from orchestrator.errors import RollwayError


@click.group(name="import")
def import_group() -> None:
    """Import pipelines exported from another tool."""


@import_group.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def codestream(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Import Code Stream pipeline exports (YAML; a file of several documents is saved whole or not at all)."""
    client = Client(ctx.obj["url"], os.environ.get("ROLLWAY_API_TOKEN") or None)
    refused = 0
    for path in files:
        try:
            saved = client.call(
                "POST", "/api/pipelines/import", content=path.read_bytes(), headers={"Content-Type": "application/yaml"}
            )
        except RollwayError as error:
            refused += 1
            click.echo(f"{path}: refused: {error.message}")
            continue
        for line in report(path, saved["pipelines"]):
            click.echo(line)
    if refused:
        sys.exit(1)


def report(path: Path, saved: list[dict[str, Any]]) -> list[str]:
    """The lines saying what became of one file's pipelines."""
    lines = []
    for pipeline in saved:
        name = f"{path}: pipeline {pipeline['project']}/{pipeline['name']}"
        warnings = pipeline.get("_warnings") or []
        if not warnings:
            lines.append(f"{name} saved, {'enabled' if pipeline['enabled'] else 'disabled'} ({pipeline['action']})")
            continue
        count = f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
        lines.append(f"{name} saved disabled with {count} ({pipeline['action']})")
        lines += [f"  - {item['path']}: {item['message']}" for item in warnings]
    return lines

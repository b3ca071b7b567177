"""All the pages: importing this module puts every page's route on the web blueprint; `register` serves them."""

from __future__ import annotations

from api.web import dashboard, executions, login, monitoring, pipelines, useroperations
from api.web.blueprint import register

PAGE_MODULES = (dashboard, executions, login, monitoring, pipelines, useroperations)

__all__ = ["PAGE_MODULES", "register"]

"""All the pages: importing this module puts every page's route on the web blueprint; `register` serves them."""

from __future__ import annotations

from api.web import executions, login
from api.web.blueprint import register

PAGE_MODULES = (executions, login)

__all__ = ["PAGE_MODULES", "register"]

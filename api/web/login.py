"""Logging in with an API token, and out."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from api.auth import authenticate, public
from api.services import services
from api.web import session as web_session
from api.web.blueprint import blueprint, local_target
from orchestrator.errors import Unauthorized


@blueprint.get("/")
@public
def home() -> Response:
    return redirect(url_for("web.executions"))


@blueprint.get("/login")
@public
def login() -> str:
    return render_template(
        "login.html",
        next=local_target(request.args.get("next")),
        open_api=services().settings.api_token is None,
        problem=None,
    )


@blueprint.post("/login")
@public
def login_post() -> Response | tuple[str, int]:
    target = local_target(request.form.get("next"))
    web_session.check_csrf(request.form.get(web_session.CSRF_FIELD))
    token = (request.form.get("token") or "").strip()
    try:
        if not token:
            raise Unauthorized("enter an API token")
        authenticate(token)
    except Unauthorized as error:
        problem = error.message if not token else "that token is not valid: unknown, revoked or mistyped"
        page = render_template(
            "login.html", next=target, open_api=services().settings.api_token is None, problem=problem
        )
        return page, 401
    web_session.log_in(token)
    return redirect(target)


@blueprint.post("/logout")
@public
def logout() -> Response:
    web_session.check_csrf(request.form.get(web_session.CSRF_FIELD))
    web_session.log_out()
    return redirect(url_for("web.login"))

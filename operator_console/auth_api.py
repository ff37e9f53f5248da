"""Staff logins: log in with a password, log out, who am I."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from operator_console import auth
from operator_console.api import (
    API,
    CSRF,
    LOGGED_IN,
    PUBLIC,
    TOKEN,
    Done,
    Model,
    Strict,
    body,
    ok,
    password_login_key,
    services,
    user_of,
)
from operator_console.settings import Settings
from registry.models import Role, User


class LoginBody(Strict):
    """Credentials."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class UserOut(Model):
    """What the API shows about a login."""

    id: int
    username: str
    display_name: str
    role: str
    merchant_id: int | None


class SessionOut(Model):
    """A new session: the bearer token and the CSRF token (the cookie is set too)."""

    token: str
    csrf: str
    user: UserOut


class MeOut(Model):
    """The logged-in user and the session's CSRF token."""

    user: UserOut
    csrf: str


@API.route(
    "POST",
    "/login",
    summary="Log in; sets the session cookie (429 with Retry-After after too many failures)",
    body=LoginBody,
    tag="auth",
    roles=PUBLIC,
    response=SessionOut,
)
async def login(request: web.Request) -> web.Response:
    """Log in with a username and password (throttled per account and per client)."""
    from operator_console.security import client_address

    data = await body(request, LoginBody)
    user, token, csrf = await request.app[password_login_key].login(
        username=data.username, password=data.password, client=client_address(request)
    )
    return session_response(services(request).settings, user, token, csrf)


def session_response(settings: Settings, user: User, token: str, csrf: str) -> web.Response:
    """The login answer: the tokens in the body and the session in an HttpOnly cookie."""
    response = ok({"token": token, "csrf": csrf, "user": auth.user_public(user)})
    response.set_cookie(
        auth.COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=settings.secure_cookies,
        max_age=int(auth.SESSION_TTL.total_seconds()),
        path="/",
    )
    return response


@API.route(
    "POST",
    "/logout",
    summary="End the session and sign the desk off (409 on_call while a caller is at it)",
    tag="auth",
    roles=LOGGED_IN,
    response=Done,
)
async def logout(request: web.Request) -> web.Response:
    """Log out; a staff member's desk signs off first (409 `on_call` with a caller at it:
    the session stays)."""
    from operator_console.ws import revoke

    user = user_of(request)
    if user.role != Role.MERCHANT:
        await services(request).dispatch.desk.sign_off(user)
    revoke(request.app, token=request[TOKEN])  # its streams first, then the session
    async with services(request).store.read() as session:
        await auth.logout(session, token=request[TOKEN])
    response = ok({"ok": True})
    response.del_cookie(auth.COOKIE, path="/", secure=services(request).settings.secure_cookies)
    return response


@API.route(
    "GET",
    "/me",
    summary="Who is logged in",
    tag="auth",
    roles=LOGGED_IN,
    response=MeOut,
)
async def me(request: web.Request) -> web.Response:
    """The current user and their CSRF token."""
    user = user_of(request)
    return ok({"user": auth.user_public(user), "csrf": request[CSRF]})

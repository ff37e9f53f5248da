"""Server-rendered pages: login, the operator desk, a ticket, a new ticket without a call,
the phone simulator, the supervisor wallboard, the admin pages and the merchant's phone
page.

Pages carry no data of their own; small JavaScript modules fill them from the API and
the WebSocket. zh-CN is the default; `?lang=en` switches and is remembered in a cookie.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from operator_console import auth
from operator_console.api import CSRF, current_user, services
from operator_console.enums import ENUMS
from operator_console.errors import Unauthorized
from operator_console.i18n import LANGS, script_words, texts
from operator_console.sim_api import sim_user, simulator_allowed
from registry.repository import NotFound

LANG_COOKIE = "yijing_lang"
#: an id in a page's path: ASCII digits (str.isdigit also takes "²", which int() refuses)
_ID = re.compile(r"[0-9]{1,18}")


def page_lang(request: web.Request) -> str:
    """The page language: ?lang=, then the cookie, then zh-CN."""
    lang = request.query.get("lang") or request.cookies.get(LANG_COOKIE) or "zh-CN"
    return lang if lang in LANGS else "zh-CN"


async def context_processor(request: web.Request) -> dict[str, Any]:
    """Values every template sees."""
    from operator_console.app import services_key

    lang = page_lang(request)
    user = current_user(request)
    # the outage banner is right from the first paint; the page's script keeps it current
    svc = request.app.get(services_key)
    return {
        "lang": lang,
        "t": texts(lang),
        "script_words": script_words(lang),
        "user": auth.user_public(user) if user else None,
        "csrf": request.get(CSRF, ""),
        "phone_up": svc.telephony.health().up if svc is not None else True,
        "simulator": svc is not None and simulator_allowed(request, user),
        "public_url": svc.settings.public_url if svc is not None else "",
    }


def _remember_lang(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    from operator_console.app import settings_key

    if "lang" in request.query and request.query["lang"] in LANGS:
        response.set_cookie(
            LANG_COOKIE,
            request.query["lang"],
            samesite="Lax",
            path="/",
            secure=request.app[settings_key].secure_cookies,
        )
    return response


def _error_page(request: web.Request, status: int, title: str, message: str) -> web.HTTPException:
    """A page that says what went wrong in the page's language (never the API's JSON)."""
    html = aiohttp_jinja2.render_string(
        "error.html", request, {"status": status, "title": title, "message": message}
    )
    error = web.HTTPForbidden if status == 403 else web.HTTPNotFound
    return error(text=html, content_type="text/html")


def _staff(request: web.Request, role: auth.Role = auth.Role.OPERATOR) -> None:
    user = current_user(request)
    if user is None:
        raise Unauthorized()
    if user.role == auth.Role.MERCHANT:
        raise web.HTTPFound("/merchant")
    if not auth.role_allows(user.role, (role,)):
        t = texts(page_lang(request))
        words = {"role": t[f"role_{role.value}"], "who": t.get(f"role_{user.role.value}", "")}
        raise _error_page(request, 403, t["forbidden_title"], t["forbidden_page"].format(**words))


#: admin sections, in menu order: (slug, i18n key)
ADMIN_SECTIONS = (
    ("residents", "adm_residents"),
    ("contacts", "adm_contacts"),
    ("merchants", "adm_merchants"),
    ("contracts", "adm_contracts"),
    ("catalog", "adm_catalog"),
    ("grids", "adm_grids"),
    ("users", "adm_users"),
    ("import", "adm_import"),
    ("access-log", "adm_access_log"),
    ("login-failures", "adm_login_failures"),
    ("oncall", "oncall_list"),
)


async def login_page(request: web.Request) -> web.StreamResponse:
    """The login form."""
    response = aiohttp_jinja2.render_template("login.html", request, {})
    return _remember_lang(request, response)


async def console_page(request: web.Request) -> web.StreamResponse:
    """The operator console."""
    _staff(request)
    response = aiohttp_jinja2.render_template("console.html", request, {})
    return _remember_lang(request, response)


async def ticket_page(request: web.Request) -> web.StreamResponse:
    """One ticket with its timeline."""
    _staff(request)
    ticket_id = request.match_info["ticket_id"]
    if not _ID.fullmatch(ticket_id):
        raise web.HTTPNotFound()
    try:
        await services(request).dispatch.tickets.get_ticket(int(ticket_id))
    except NotFound as exc:
        t = texts(page_lang(request))
        message = t["ticket_not_found"].format(id=ticket_id)
        raise _error_page(request, 404, t["not_found_title"], message) from exc
    response = aiohttp_jinja2.render_template("ticket.html", request, {"ticket_id": ticket_id})
    return _remember_lang(request, response)


async def new_ticket_page(request: web.Request) -> web.StreamResponse:
    """A ticket without a live call (a family member at the door, another phone line)."""
    _staff(request)
    response = aiohttp_jinja2.render_template("ticket_new.html", request, {})
    return _remember_lang(request, response)


async def simulator_page(request: web.Request) -> web.StreamResponse:
    """The phone simulator (the demo's admin only; none on real telephony or in production)."""
    _staff(request)
    try:
        sim_user(request)
    except NotFound as exc:
        raise web.HTTPNotFound() from exc
    response = aiohttp_jinja2.render_template("simulator.html", request, {})
    return _remember_lang(request, response)


async def wallboard_page(request: web.Request) -> web.StreamResponse:
    """The supervisor's wall screen."""
    _staff(request, auth.Role.SUPERVISOR)
    response = aiohttp_jinja2.render_template("wallboard.html", request, {})
    return _remember_lang(request, response)


async def scorecard_page(request: web.Request) -> web.StreamResponse:
    """One merchant's scorecard over a period, for supervisors."""
    _staff(request, auth.Role.SUPERVISOR)
    merchant_id = request.match_info["merchant_id"]
    if not _ID.fullmatch(merchant_id):
        raise web.HTTPNotFound()
    response = aiohttp_jinja2.render_template(
        "scorecard.html", request, {"merchant_id": merchant_id}
    )
    return _remember_lang(request, response)


async def admin_page(request: web.Request) -> web.StreamResponse:
    """One admin section: a list, a form, the import or the access log."""
    _staff(request, auth.Role.ADMIN)
    section = request.match_info.get("section", "residents")
    if section not in dict(ADMIN_SECTIONS):
        raise web.HTTPNotFound()
    response = aiohttp_jinja2.render_template(
        "admin.html", request, {"section": section, "sections": ADMIN_SECTIONS, "enums": ENUMS}
    )
    return _remember_lang(request, response)


async def favicon(request: web.Request) -> web.StreamResponse:
    """Browsers ask for /favicon.ico on their own: the icon of the static files."""
    raise web.HTTPMovedPermanently("/static/favicon.svg")


async def merchant_page(request: web.Request) -> web.StreamResponse:
    """The merchant's phone page: a code login (or a one-time link's), then their orders."""
    from operator_console.merchant_api import login_service

    link = request.path == "/merchant/login"
    context = {
        "can_text": login_service(request.app).can_text,
        "link_login": link,
        "demo": services(request).simulator is not None,
    }
    response = aiohttp_jinja2.render_template("merchant.html", request, context)
    if link:
        # the address holds a login token: keep it out of caches and other sites' Referer
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
    return _remember_lang(request, response)


async def notices_page(request: web.Request) -> web.StreamResponse:
    """Notices to grids for supervisors: write, send, watch the progress."""
    _staff(request, auth.Role.SUPERVISOR)
    response = aiohttp_jinja2.render_template("notices.html", request, {})
    return _remember_lang(request, response)


async def open_data_page(request: web.Request) -> web.StreamResponse:
    """The open-data table for anyone (no login): the last 12 months per grid."""
    from dataclasses import asdict

    from dispatch import open_data
    from operator_console.app import services_key
    from operator_console.open_data_api import months_of

    start, end = months_of(request)
    async with request.app[services_key].store.read() as session:
        rows = await open_data.load(session, start=start, end=end)
    words = texts(page_lang(request))
    zh = page_lang(request) == "zh-CN"
    fields = [
        {"name": name, "label": words[f"od_{name}"], "definition": zh_def if zh else en_def}
        for name, (zh_def, en_def) in open_data.FIELDS.items()
    ]
    context = {"rows": [asdict(r) for r in rows], "fields": fields}
    response = aiohttp_jinja2.render_template("open_data.html", request, context)
    return _remember_lang(request, response)


def add_routes(app: web.Application) -> None:
    """Register the pages."""
    app.router.add_get("/wallboard", wallboard_page)
    app.router.add_get("/wallboard/merchants/{merchant_id}", scorecard_page)
    app.router.add_get("/admin", admin_page)
    app.router.add_get("/admin/{section}", admin_page)
    app.router.add_get("/merchant", merchant_page)
    app.router.add_get("/merchant/login", merchant_page)
    app.router.add_get("/", console_page)
    app.router.add_get("/login", login_page)
    app.router.add_get("/tickets/new", new_ticket_page)
    app.router.add_get("/tickets/{ticket_id}", ticket_page)
    app.router.add_get("/simulator", simulator_page)
    app.router.add_get("/open-data", open_data_page)
    app.router.add_get("/notices", notices_page)
    app.router.add_get("/favicon.ico", favicon)

"""The console's HTTP side (aiohttp): routes, the identity and CSRF middleware, security headers.

No page or API answers without an identity (``worker.review.auth``) except ``/signin``, ``/static/``,
``/healthz`` and ``/metrics`` (the operations endpoints, which show no reviewer or image data). Every POST
made with ambient credentials passes the Origin and CSRF checks first. Responses carry a strict
Content-Security-Policy (no inline script, images only from the console), ``Cache-Control: no-store`` and
``Referrer-Policy: same-origin`` (which keeps the ``Origin`` header on the console's own POSTs).
Items are addressed by ``ref``: the review record's key in URL-safe base64.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import urlencode

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from worker.review import assets, pages
from worker.review.auth import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, Authenticator, Identity, RequestFacts
from worker.review.desk import PublishFailed, ReviewDesk
from worker.review.images import FetchRefused, ItemImages
from worker.review.items import ItemKind
from worker.review.metrics import ReviewMetrics
from worker.review.queue import ItemFilter, LeaseRefused
from worker.review.throttle import TokenGuesses
from worker.review.verdicts import VerdictKind, VerdictRefused, VerdictRequest

PUBLIC_PATHS: Final = frozenset(
    {"/signin", "/healthz", "/metrics", "/static/review.css", "/static/review.js"}
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
TEXT_EXPOSITION: Final = "text/plain; version=0.0.4; charset=utf-8"
_IDENTITY: Final = web.RequestKey("identity", Identity)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ref_of(key: str) -> str:
    """The URL form of an item key."""
    return base64.urlsafe_b64encode(key.encode()).rstrip(b"=").decode("ascii")


def key_of(ref: str) -> str:
    """The item key of a ``ref``; ``HTTPNotFound`` for anything that is not one."""
    try:
        return base64.urlsafe_b64decode(ref + "=" * (-len(ref) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise web.HTTPNotFound(text="no such item") from None


class ReviewWeb:
    """The routes over ``desk`` and ``images``; ``origins`` are the console's own (empty: its address)."""

    def __init__(
        self,
        desk: ReviewDesk,
        images: ItemImages,
        auth: Authenticator,
        metrics: ReviewMetrics,
        registry: CollectorRegistry,
        *,
        origins: tuple[str, ...],
        secure_cookies: bool,
        session_s: float,
        healthy: Callable[[], bool],
        guesses: TokenGuesses,
    ) -> None:
        self._desk = desk
        self._images = images
        self._auth = auth
        self._metrics = metrics
        self._registry = registry
        self._origins = origins
        self._secure = secure_cookies
        self._session_s = session_s
        self._healthy = healthy
        self._guesses = guesses

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.add_routes(
            [
                web.get("/signin", self._sign_in_form),
                web.post("/signin", self._sign_in),
                web.post("/signout", self._sign_out),
                web.get("/", self._queue),
                web.get("/next", self._next),
                web.get("/items/{ref}", self._item),
                web.get("/items/{ref}/image", self._image),
                web.post("/items/{ref}/verdict", self._verdict),
                web.post("/items/{ref}/renew", self._renew),
                web.post("/items/{ref}/release", self._release),
                web.get("/static/review.css", self._css),
                web.get("/static/review.js", self._js),
                web.get("/healthz", self._health),
                web.get("/metrics", self._metrics_page),
            ]
        )
        return app

    # --- identity and CSRF -------------------------------------------------------------------------------

    def _facts(self, request: web.Request) -> RequestFacts:
        headers = {name.lower(): value for name, value in request.headers.items()}
        return RequestFacts(request.remote, headers, request.cookies.get(SESSION_COOKIE))

    def _own_origins(self, request: web.Request) -> tuple[str, ...]:
        return self._origins or (f"{request.scheme}://{request.host}",)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await self._checked(request, handler)
        except web.HTTPException as exc:
            exc.headers.update(SECURITY_HEADERS)
            raise
        response.headers.update(SECURITY_HEADERS)
        return response

    async def _checked(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PUBLIC_PATHS:
            return await handler(request)
        facts = self._facts(request)
        bearer = facts.bearer_token is not None
        address = request.remote or "unknown"
        if bearer and (wait_s := self._guesses.retry_after(address)) > 0:
            self._metrics.observe_auth_failure("throttled")
            return _json({"message": "too many wrong tokens; try again later"}, status=429, retry_s=wait_s)
        who = self._auth.identify(facts)
        if who is None and bearer:
            self._guesses.failed(address)
            self._metrics.observe_auth_failure("wrong_token")
        if who is None:
            if request.method == "GET" and "application/json" not in request.headers.get("Accept", ""):
                raise web.HTTPSeeOther("/signin")
            return _json({"message": "sign in first"}, status=401)
        if request.method not in ("GET", "HEAD"):
            presented = request.headers.get(CSRF_HEADER) or str((await request.post()).get(CSRF_FIELD, ""))
            refusal = self._auth.refuse_state_change(who, facts, presented, self._own_origins(request))
            if refusal is not None:
                return _json({"message": refusal}, status=403)
        request[_IDENTITY] = who
        return await handler(request)

    async def _sign_in_form(self, _request: web.Request) -> web.StreamResponse:
        return _html(pages.sign_in_page())

    async def _sign_in(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        if origin not in self._own_origins(request):
            return _html(pages.sign_in_page("Sign in from the console's own page."), status=403)
        address = request.remote or "unknown"
        if (wait_s := self._guesses.retry_after(address)) > 0:
            self._metrics.observe_auth_failure("throttled")
            page = pages.sign_in_page("Too many wrong tokens from this address; try again in a minute.")
            return _retry_after(_html(page, status=429), wait_s)
        token = str((await request.post()).get("token", ""))
        who = self._auth.sign_in(token)
        if who is None:
            self._guesses.failed(address)
            self._metrics.observe_auth_failure("wrong_token")
            return _html(pages.sign_in_page("That token is not valid."), status=401)
        response = _see_other("/")
        response.set_cookie(
            SESSION_COOKIE,
            self._auth.session_cookie(who),
            max_age=int(self._session_s),
            httponly=True,
            secure=self._secure,
            samesite="Strict",
            path="/",
        )
        return response

    async def _sign_out(self, _request: web.Request) -> web.StreamResponse:
        response = _see_other("/signin")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    # --- the queue and items -----------------------------------------------------------------------------

    async def _queue(self, request: web.Request) -> web.StreamResponse:
        who = _who(request)
        where = _filter(request)
        items = self._desk.queue.pending(who.role)
        rules = sorted({reason.rule for item in items for reason in item.result.reasons})
        shown = [item for item in items if where.matches(item)]
        page = pages.queue_page(
            who,
            csrf=self._auth.csrf_token(who),
            items=shown,
            refs=[ref_of(item.key) for item in shown],
            where=where,
            rules=rules,
        )
        return _html(page)

    async def _next(self, request: web.Request) -> web.StreamResponse:
        who = _who(request)
        claimed = self._desk.claim_next(who, _filter(request))
        if claimed is None:
            return _html(
                pages.message_page(
                    "Nothing to review",
                    "The queue is empty for now.",
                    who,
                    self._auth.csrf_token(who),
                    refresh_to=str(request.rel_url),
                )
            )
        item, _lease = claimed
        raise web.HTTPSeeOther(f"/items/{ref_of(item.key)}{_query(request)}")

    async def _item(self, request: web.Request) -> web.StreamResponse:
        who = _who(request)
        csrf = self._auth.csrf_token(who)
        try:
            item, lease = self._desk.claim(who, key_of(request.match_info["ref"]))
        except LeaseRefused as exc:
            return _html(pages.message_page("Not available", exc.message, who, csrf), status=409)
        page = pages.item_page(
            who,
            csrf=csrf,
            item=item,
            ref=ref_of(item.key),
            lease=lease,
            lease_s=self._desk.queue.lease_s,
            labels=self._desk.labels,
            next_url=f"/next{_query(request)}",
            ban_bank=self._desk.ban_bank if self._desk.may_ban(who) else None,
        )
        return _html(page)

    async def _image(self, request: web.Request) -> web.StreamResponse:
        who = _who(request)
        key = key_of(request.match_info["ref"])
        lease = self._desk.queue.held_by(who.reviewer)
        item = self._desk.queue.get(key)
        if lease is None or lease.item_key != key or item is None:
            return _json({"message": "claim the item to see its image"}, status=403)
        try:
            image = await self._images.image(item.result.source)
        except FetchRefused as exc:
            self._metrics.observe_image_failure(str(exc.reason))
            return _json(
                {"message": f"the image cannot be shown: {exc}", "reason": str(exc.reason)}, status=502
            )
        return web.Response(
            body=image.data, content_type=image.content_type, headers={"Cache-Control": "no-store, private"}
        )

    async def _verdict(self, request: web.Request) -> web.StreamResponse:
        who = _who(request)
        form = await request.post()
        try:
            verdict = VerdictKind(str(form.get("verdict", "")))
        except ValueError:
            return _json({"message": "verdict must be approve, reject or escalate"}, status=422)
        reason = str(form.get("reason") or form.get(f"{verdict}_reason") or "")
        ban = str(form.get("ban", "")).lower() in ("1", "true", "on", "yes")
        verdict_request = VerdictRequest(verdict, reason, str(form.get("note", "")).strip(), ban=ban)
        try:
            plan = await self._desk.decide(
                who, key_of(request.match_info["ref"]), str(form.get("lease", "")), verdict_request
            )
        except LeaseRefused as exc:
            return _json({"message": exc.message}, status=409)
        except VerdictRefused as exc:
            return _json({"message": exc.message}, status=422)
        except PublishFailed as exc:
            return _json({"message": str(exc)}, status=503)
        next_url = f"/next{_query(request)}"
        if "application/json" in request.headers.get("Accept", ""):
            return _json({"ok": True, "next": next_url, "published_to": plan.published_to})
        raise web.HTTPSeeOther(next_url)

    async def _renew(self, request: web.Request) -> web.StreamResponse:
        who = _who(request)
        form = await request.post()
        try:
            lease = self._desk.renew(who, key_of(request.match_info["ref"]), str(form.get("lease", "")))
        except LeaseRefused as exc:
            return _json({"message": exc.message}, status=409)
        return _json({"ok": True, "lease_s": self._desk.queue.lease_s, "lease": lease.lease_id})

    async def _release(self, request: web.Request) -> web.StreamResponse:
        who = _who(request)
        form = await request.post()
        try:
            self._desk.release(who, key_of(request.match_info["ref"]), str(form.get("lease", "")))
        except LeaseRefused as exc:
            return _json({"message": exc.message}, status=409)
        raise web.HTTPSeeOther("/")

    # --- static and operations ---------------------------------------------------------------------------

    async def _css(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(text=assets.CSS, content_type="text/css")

    async def _js(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(text=assets.JS, content_type="text/javascript")

    async def _health(self, _request: web.Request) -> web.StreamResponse:
        healthy = self._healthy()
        return _json({"status": "ok" if healthy else "starting"}, status=200 if healthy else 503)

    async def _metrics_page(self, _request: web.Request) -> web.StreamResponse:
        response = web.Response(body=generate_latest(self._registry))
        response.headers["Content-Type"] = TEXT_EXPOSITION
        return response


def _who(request: web.Request) -> Identity:
    """The identity the middleware found (it sets one on every route that is not public)."""
    return request[_IDENTITY]


def _filter(request: web.Request) -> ItemFilter:
    queue = request.query.get("queue") or None
    kind = ItemKind(queue) if queue in set(ItemKind) else None
    return ItemFilter(rule=request.query.get("rule") or None, tag=request.query.get("tag") or None, kind=kind)


def _query(request: web.Request) -> str:
    kept = {name: request.query[name] for name in ("rule", "tag", "queue") if request.query.get(name)}
    return "?" + urlencode(kept) if kept else ""


def _see_other(location: str) -> web.Response:
    """A 303 the handler can still set cookies on (an ``HTTPSeeOther`` must be raised, not returned)."""
    return web.Response(status=303, headers={"Location": location})


def _html(text: str, *, status: int = 200) -> web.Response:
    return web.Response(text=text, content_type="text/html", status=status)


def _json(body: dict[str, object], *, status: int = 200, retry_s: float = 0.0) -> web.Response:
    response = web.json_response(body, status=status)
    return _retry_after(response, retry_s) if retry_s > 0 else response


def _retry_after(response: web.Response, wait_s: float) -> web.Response:
    """``response`` telling the client to wait ``wait_s`` seconds (rounded up) before trying again."""
    response.headers["Retry-After"] = str(math.ceil(wait_s))
    return response

"""AccessControl: the ASGI middleware in front of every route. It checks the API key (401 without
one, 403 for a user key on a control endpoint), refuses bodies over the size limit (413),
generations beyond a client's share (429) and new generations while the server stops (503), each
as the route's declared policy says (route_policy.py). Errors have FastAPI's `{"detail": ...}`
shape, the contract's shape for framework-level refusals."""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config.access import AccessArgs
from .generations import GenerationsInFlight
from .route_policy import Access, RoutePolicy, RouteTable


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit} bytes")


def route_path(scope: Scope) -> str:
    """The request's path within the app. Serve mounts an application at its route prefix: the
    prefix is the scope's root_path, and the path still begins with it (as ASGI has it)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root):] or "/"
    return path


def _matches(path: str, patterns: list[str]) -> bool:
    """A pattern ending in '/' covers everything below it; others match exactly. '/' alone is the
    root page only (never "every path")."""
    return any(path == p or (p.endswith("/") and p != "/" and path.startswith(p)) for p in patterns)


def _has(key: str, keys: frozenset[str]) -> bool:
    found = False
    for known in keys:  # every key compared, in constant time each
        found |= hmac.compare_digest(key.encode(), known.encode())
    return found


class AccessControl:
    def __init__(self, app: ASGIApp, args: AccessArgs, user_keys: frozenset[str], admin_keys: frozenset[str],
                 generations: GenerationsInFlight, routes: RouteTable):
        self.app = app
        self.args = args
        self.routes = routes
        self.user_keys, self.admin_keys = user_keys, admin_keys
        self.generations = generations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = self._presented_key(scope, headers) if self.user_keys else None
        declared = self._policy(scope)
        generation = declared.speaks
        client = f"key:{key}" if key else f"addr:{(scope.get('client') or ('?',))[0]}"
        scope.setdefault("state", {})["client"] = client  # whose jobs (request.state.client)
        limit = getattr(self.args, declared.body.value)
        refusal = self._refusal(declared, key, headers, limit) or \
            (self._generation_refusal(client) if generation else None)
        if refusal is not None:
            await self._discard_body(receive, headers)
            await refusal(scope, receive, send)
            return
        if not generation:
            await self.app(scope, self._limited(receive, limit), send)
            return
        self.generations.start(client)
        try:
            await self.app(scope, self._limited(receive, limit), send)
        finally:
            self.generations.end(client)

    def _policy(self, scope: Scope) -> RoutePolicy:
        """The route's declared policy, with the operator's extra public and admin paths applied."""
        declared = self.routes.policy_for(scope)
        path = route_path(scope)
        if _matches(path, self.args.public_paths):
            return RoutePolicy(Access.PUBLIC, declared.speaks, declared.body)
        if _matches(path, self.args.admin_paths):
            return RoutePolicy(Access.ADMIN, declared.speaks, declared.body)
        return declared

    def _generation_refusal(self, client: str) -> JSONResponse | None:
        if self.generations.stopping:
            return JSONResponse({"detail": "the server is stopping and takes no new generation; retry in a moment "
                                           "(on another server, if there is one)"}, status_code=503,
                                headers={"Retry-After": "5"})
        if self.generations.per_client[client] >= self.args.max_generations_per_client:
            return JSONResponse({"detail": f"at most {self.args.max_generations_per_client} generations at once per "
                                           "client; retry when one has finished"}, status_code=429,
                                headers={"Retry-After": "1"})
        return None

    async def _discard_body(self, receive: Receive, headers: Headers, received: int = 0) -> None:
        """Reads and drops the body of a refused request, up to `max_discarded_body_bytes`. A client
        sends its whole body before it reads the answer; a server that answers and closes while the
        body is still coming resets the connection, and the client sees that instead of the answer."""
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.args.max_discarded_body_bytes):
            return
        while received <= self.args.max_discarded_body_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    @staticmethod
    def _presented_key(scope: Scope, headers: Headers) -> str | None:
        """The Bearer token, ElevenLabs' `xi-api-key` header, or an `api_key` query parameter (audio
        players cannot send headers)."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        if key := headers.get("xi-api-key", "").strip():
            return key
        return QueryParams(scope.get("query_string", b"")).get("api_key") or None

    def _refusal(self, declared: RoutePolicy, key: str | None, headers: Headers, limit: int) -> JSONResponse | None:
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            too_large = BodyTooLarge(limit)
            return JSONResponse({"detail": too_large.detail}, status_code=too_large.status_code)
        if not self.user_keys or declared.access is Access.PUBLIC:
            return None
        if key is None or not _has(key, self.user_keys):
            return JSONResponse({"detail": "missing or unknown API key: send 'Authorization: Bearer <key>'"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if self.admin_keys and declared.access is Access.ADMIN and not _has(key, self.admin_keys):
            return JSONResponse({"detail": "this endpoint needs an admin key"}, status_code=403)
        return None

    def _limited(self, receive: Receive, limit: int) -> Receive:
        """`receive` that refuses a body (chunked, without Content-Length) once it passes the limit,
        after reading the rest of it (see _discard_body)."""
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body", False):
                        await self._discard_body(receive, Headers(), received)
                    raise BodyTooLarge(limit)
            return message

        return limited

"""What the access middleware does with each route, declared on the route itself (`@policy`, as
`@error_shape` declares its errors) and gathered from the app's routes when it is built, so that
a route added without a policy fails the build instead of escaping the key checks, the drain's
count of generations in flight or the per-client share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

F = TypeVar("F", bound=Callable[..., object])


class Access(Enum):
    PUBLIC = "public"
    """Served without a key: health checks of load balancers, the web page."""
    USER = "user"
    """Any API key (when keys are set)."""
    ADMIN = "admin"
    """A control endpoint: it changes what every user gets or writes files on the server; an admin
    key when admin keys are set."""


class BodyLimit(Enum):
    """Which of AccessArgs' limits a route's request body has."""

    STANDARD = "max_body_bytes"
    JOB = "max_job_body_bytes"
    VOICE_UPLOAD = "max_voice_upload_bytes"


@dataclass(frozen=True)
class RoutePolicy:
    access: Access = Access.USER
    speaks: bool = False
    """It keeps a synthesis (or a conversion) busy: counted against the client's share and by the
    drain, and refused while the server stops."""
    body: BodyLimit = BodyLimit.STANDARD


UNMATCHED = RoutePolicy()
"""A path no route serves (the app answers 404): a key is needed to learn even that."""


def policy(access: Access = Access.USER, *, speaks: bool = False, body: BodyLimit = BodyLimit.STANDARD
           ) -> Callable[[F], F]:
    """Declares how the access middleware treats a route."""
    def declare(endpoint: F) -> F:
        endpoint.route_policy = RoutePolicy(access, speaks, body)  # type: ignore[attr-defined]
        return endpoint
    return declare


class UnclassifiedRoute(RuntimeError):
    """A route was added without a policy."""


class RouteTable:
    """Every route of the app with its policy, in the app's matching order."""

    def __init__(self, routes: Sequence[tuple[BaseRoute, RoutePolicy]]):
        self.routes = list(routes)

    @classmethod
    def of(cls, app: FastAPI) -> "RouteTable":
        """The app's routes (its routers' included without a prefix, as this app includes them) and
        their declared policies; FastAPI's own documentation pages need a key like any user route.
        Raises UnclassifiedRoute naming every route without one."""
        framework = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url} - {None}
        found, missing = [], []
        for route in (context.original_route for context in iter_route_contexts(app.routes)):
            declared = getattr(getattr(route, "endpoint", None), "route_policy", None)
            if declared is None and getattr(route, "path", None) in framework:
                declared = RoutePolicy(Access.USER)
            if declared is None:
                missing.append(getattr(route, "path", repr(route)))
            else:
                found.append((route, declared))
        if missing:
            raise UnclassifiedRoute(f"routes without a @policy: {', '.join(missing)}")
        return cls(found)

    def policy_for(self, scope: Scope) -> RoutePolicy:
        """The policy of the route that serves the request; a route that has the path but not the
        method (the app answers 405) lends its policy too."""
        partial = None
        for route, declared in self.routes:
            match, _child = route.matches(scope)
            if match is Match.FULL:
                return declared
            if match is Match.PARTIAL and partial is None:
                partial = declared
        return partial or UNMATCHED

    def paths(self, access: Access) -> list[str]:
        """The paths of the routes with that access (for operators and tests)."""
        return sorted({getattr(route, "path", "") for route, declared in self.routes if declared.access is access})

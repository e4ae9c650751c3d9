"""Status endpoints (§2): readiness, voices, RVC voices, current settings."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from ..errors import ContractError
from .deps import Generations, Service

router = APIRouter(tags=["status"])


@router.get("/api/ready", response_class=PlainTextResponse)
async def ready(service: Service, generations: Generations) -> PlainTextResponse:
    """`Ready` while the default engine has a replica that can serve, `Unloaded` otherwise;
    `Stopping` (503, so that load balancers look elsewhere) once the server has begun to stop."""
    if generations.stopping:
        return PlainTextResponse("Stopping", status_code=503)
    return PlainTextResponse("Ready" if await service.ready() else "Unloaded")


@router.get("/api/voices")
async def voices(service: Service) -> dict[str, object]:
    return await service.voices()


@router.get("/api/rvcvoices")
async def rvc_voices(service: Service) -> dict[str, object]:
    # Both keys: the public docs name `voices`, the real clients read `rvcvoices`.
    found = service.rvc_voices()
    return {"status": "success", "voices": found, "rvcvoices": found}


@router.get("/api/currentsettings")
async def current_settings(service: Service) -> dict[str, object]:
    return await service.current_settings()


@router.get("/api/deployments")
async def deployments(request: Request) -> dict[str, object]:
    """The Serve applications behind this server and their deployments: state, replicas by state,
    the target count and autoscaling range (what `alltalk-serve status` shows)."""
    describe = request.app.state.deployments
    if describe is None:
        raise ContractError(404, {"detail": "this server does not run on Ray Serve: no deployments to show"})
    return {"applications": await describe()}


@router.get("/settings-json")
async def settings_json(service: Service) -> dict[str, object]:
    """The whole `confignew.json` as loaded."""
    return service.settings.config.model_dump(mode="json", by_alias=True)

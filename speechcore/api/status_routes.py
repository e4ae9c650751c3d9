"""Status endpoints (§2): readiness, voices, RVC voices, current settings."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from .answers import CurrentSettings, RvcVoicesAnswer, VoicesAnswer
from .contract_error import ContractError
from .deps import Generations, Service
from .route_policy import Access, policy

router = APIRouter(tags=["status"])


@router.get("/api/ready", response_class=PlainTextResponse)
@policy(Access.PUBLIC)
async def ready(service: Service, generations: Generations) -> PlainTextResponse:
    """`Ready` while the default engine has a replica that can serve, `Unloaded` otherwise;
    `Stopping` (503, so that load balancers look elsewhere) once the server has begun to stop."""
    if generations.stopping:
        return PlainTextResponse("Stopping", status_code=503)
    return PlainTextResponse("Ready" if await service.engines.ready() else "Unloaded")


@router.get("/api/voices", response_model=VoicesAnswer, response_model_exclude_none=True)
@policy()
async def voices(service: Service) -> dict[str, object]:
    info = await service.engines.info()
    if not info.capabilities.multivoice:
        return {"status": "error", "message": f"The {info.engine} engine does not support multiple voices."}
    return {"status": "success", "voices": info.voices or ["No Voices Found"]}


@router.get("/api/rvcvoices", response_model=RvcVoicesAnswer)
@policy()
async def rvc_voices(service: Service) -> dict[str, object]:
    # Both keys: the public docs name `voices`, the real clients read `rvcvoices`.
    found = service.rvc.voices()
    return {"status": "success", "voices": found, "rvcvoices": found}


@router.get("/api/currentsettings", response_model=CurrentSettings)
@policy()
async def current_settings(service: Service) -> dict[str, object]:
    """The current engine as it runs (its replicas' answer) with its model settings."""
    info = await service.engines.info()
    ms = service.engines.model_settings(info)
    caps, s = info.capabilities, ms.settings
    return {
        "engines_available": service.engines.supported,
        "current_engine_loaded": info.engine,
        "models_available": [{"name": m} for m in info.models],
        "current_model_loaded": info.current_model,
        "manufacturer_name": ms.model_details.manufacturer_name or info.manufacturer_name,
        "audio_format": info.audio_format,
        "deepspeed_capable": caps.deepspeed,
        "deepspeed_available": caps.deepspeed_available,
        "deepspeed_enabled": info.deepspeed_enabled,
        "generationspeed_capable": caps.generationspeed,
        "generationspeed_set": s.generationspeed_set,
        "lowvram_capable": caps.lowvram,
        "lowvram_enabled": info.lowvram_enabled,  # what the replicas run with: always off without CUDA
        "pitch_capable": caps.pitch,
        "pitch_set": s.pitch_set,
        "repetitionpenalty_capable": caps.repetitionpenalty,
        "repetitionpenalty_set": s.repetitionpenalty_set,
        "streaming_capable": caps.streaming,
        "temperature_capable": caps.temperature,
        "temperature_set": s.temperature_set,
        "ttsengines_installed": s.engine_installed,
        "languages_capable": caps.languages,
        "multivoice_capable": caps.multivoice,
        "multimodel_capable": caps.multimodel,
    }


@router.get("/api/deployments")
@policy()
async def deployments(request: Request) -> dict[str, object]:
    """The Serve applications behind this server and their deployments: state, replicas by state,
    the target count and autoscaling range (what `alltalk-serve status` shows)."""
    describe = request.app.state.deployments
    if describe is None:
        raise ContractError(404, {"detail": "this server does not run on Ray Serve: no deployments to show"})
    return {"applications": await describe()}


@router.get("/settings-json")
@policy()
async def settings_json(service: Service) -> dict[str, object]:
    """The whole `confignew.json` as loaded."""
    return service.settings.config.model_dump(mode="json", by_alias=True)

"""Control endpoints (§3): model and engine switches, stop, config reload, DeepSpeed, LowVRAM."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from .answers import StatusAnswer
from .deps import Service
from .route_policy import Access, policy

router = APIRouter(tags=["control"])


@router.post("/api/reload", response_model=StatusAnswer, response_model_exclude_none=True)
@policy(Access.ADMIN)
async def reload_model(service: Service, tts_method: Annotated[str | None, Query()] = None) -> dict[str, object]:
    """Switches the current engine to another of its models (`models_available`)."""
    return await service.controls.reload_model(tts_method)


@router.post("/api/enginereload", response_model=StatusAnswer, response_model_exclude_none=True)
@policy(Access.ADMIN)
async def reload_engine(service: Service, engine: Annotated[str | None, Query()] = None) -> dict[str, object]:
    """Makes another live engine the default one, without a restart."""
    return await service.controls.reload_engine(engine)


@router.put("/api/stop-generation")
@policy()
async def stop_generation(service: Service) -> dict[str, object]:
    stopped = await service.controls.stop_all()
    return {"message": f"Cancelling current TTS generation ({stopped} in progress)."}


@router.get("/api/reload_config", response_class=PlainTextResponse)
@policy(Access.ADMIN)
async def reload_config(service: Service) -> PlainTextResponse:
    service.controls.reload_config()
    return PlainTextResponse("Config file reloaded successfully")


@router.post("/api/deepspeed", response_model=StatusAnswer, response_model_exclude_none=True)
@policy(Access.ADMIN)
async def deepspeed(service: Service, new_deepspeed_value: Annotated[bool, Query()]) -> dict[str, object]:
    return await service.controls.set_deepspeed(new_deepspeed_value)


@router.post("/api/lowvramsetting", response_model=StatusAnswer, response_model_exclude_none=True)
@policy(Access.ADMIN)
async def lowvram(service: Service, new_low_vram_value: Annotated[bool, Query()]) -> dict[str, object]:
    return await service.controls.set_lowvram(new_low_vram_value)

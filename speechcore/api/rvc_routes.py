"""RVC tool endpoint (§9.4)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form

from .deps import Service
from .errors import detail, error_shape
from .route_policy import Access, policy
from .voice2rvc import voice_to_rvc

router = APIRouter(tags=["rvc"])


@router.post("/api/voice2rvc")
@error_shape(detail)
@policy(Access.ADMIN, speaks=True)
async def voice2rvc(service: Service, input_tts_path: Annotated[str, Form()], output_rvc_path: Annotated[str, Form()],
                    pth_name: Annotated[str, Form()], pitch: Annotated[str, Form()],
                    method: Annotated[str, Form()]) -> dict[str, object]:
    """Converts a file of the output folder with `models/rvc_voices/<pth_name>` into another file of
    the output folder."""
    return await voice_to_rvc(service.rvc, service.outputs(), input_tts_path, output_rvc_path, pth_name, pitch, method)

"""`POST /api/tts-generate` (§4)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form

from ..contract import GenerateForm
from .deps import Service

router = APIRouter(tags=["generation"])


@router.post("/api/tts-generate")
async def tts_generate(service: Service, form: Annotated[GenerateForm, Form()]) -> dict[str, object]:
    """Speaks `text_input` into a file under the output folder and answers its URLs."""
    return await service.generate(form)

"""The TTS Generator page's tools (§6B.4–§6B.6)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from ..tts_list import SRT_FILE, TtsListEntry, build_srt, load_tts_list, save_tts_list
from .contract_error import ContractError
from .deps import Service
from .route_policy import Access, policy

router = APIRouter(tags=["tools"])


@router.post("/api/save-tts-data")
@policy(Access.ADMIN)
async def save_tts_data(service: Service, entries: list[TtsListEntry]) -> dict[str, object]:
    """Stores the list (a bare JSON array) as ttsList.json in the output folder."""
    try:
        await asyncio.to_thread(save_tts_list, service.outputs(), entries)
    except OSError as exc:
        raise ContractError(500, {"detail": f"Failed to save TTS data: {exc}"}) from exc
    return {"message": "Data saved successfully"}


@router.get("/api/srt-generation", response_class=FileResponse)
@policy()
async def srt_generation(service: Service) -> FileResponse:
    """Subtitles (SRT) for the saved list, timed by the durations of its audio files."""
    store = service.outputs()
    entries = await asyncio.to_thread(load_tts_list, store)
    if entries is None:
        raise ContractError(404, {"detail": "TTS list file not found"})
    srt = await asyncio.to_thread(build_srt, store, entries)
    path = await asyncio.to_thread(store.write_named, SRT_FILE, lambda out: out.write(srt.encode("utf-8")))
    return FileResponse(path, media_type="application/octet-stream", filename=SRT_FILE)


@router.get("/api/trigger-analysis")
@policy()
async def trigger_analysis(threshold: Annotated[int, Query()] = 98,
                           whisper_model: Annotated[str, Query()] = "large-v3") -> dict[str, object]:
    """Transcription analysis needs a Whisper model; this server installs none and downloads none."""
    raise ContractError(501, {"status": "error", "message": "Transcription analysis is not available: no Whisper "
                                                            "model is installed on this server"})

"""Generated files (§6B.2, §6B.3): only files directly inside the output folder are served."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from .contract_error import ContractError
from .deps import Service
from .route_policy import policy

router = APIRouter(tags=["files"])
_CACHE_SECONDS = 7 * 24 * 3600


def _existing(service: Service, filename: str) -> Path:
    path = service.outputs().find(filename)
    if path is None:
        raise ContractError(404, {"detail": "File not found"})
    return path


class AudioFileResponse(FileResponse):
    """A file sent in large pieces: behind Serve each body message is a hop from the ingress to
    the proxy, so a typical output goes as one message (ranges still work)."""

    chunk_size = 4 * 1024 * 1024


def _media_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


@router.get("/audio/{filename}")
@policy()
async def audio(service: Service, filename: str) -> FileResponse:
    path = _existing(service, filename)
    return AudioFileResponse(path, media_type=_media_type(path))


@router.get("/audiocache/{filename}")
@policy()
async def audio_cache(service: Service, filename: str) -> FileResponse:
    """The same file as a download that browsers may cache for a week."""
    path = _existing(service, filename)
    return AudioFileResponse(path, media_type=_media_type(path), filename=path.name,
                        headers={"Cache-Control": f"public, max-age={_CACHE_SECONDS}"})

"""Generated files (§6B.2, §6B.3): only files directly inside the output folder are served."""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.types import Send

from .contract_error import ContractError
from .deps import Service
from .route_policy import policy

router = APIRouter(tags=["files"])
_CACHE_SECONDS = 7 * 24 * 3600


def _found(service: Service, filename: str) -> tuple[Path, os.stat_result] | None:
    path = service.outputs().find(filename)
    try:
        return None if path is None else (path, path.stat())
    except FileNotFoundError:  # removed meanwhile (retention)
        return None


async def _existing(service: Service, filename: str) -> tuple[Path, os.stat_result]:
    """The file and its stat, looked up in one worker thread (the response needs the stat)."""
    found = await anyio.to_thread.run_sync(_found, service, filename)
    if found is None:
        raise ContractError(404, {"detail": "File not found"})
    return found


class AudioFileResponse(FileResponse):
    """A file sent in large pieces: behind Serve each body message is a hop from the ingress to
    the proxy, so a typical output goes as one message (ranges still work). A file of one piece
    is read in one worker thread, where FileResponse opens, reads and closes it in three."""

    chunk_size = 4 * 1024 * 1024

    async def _handle_simple(self, send: Send, send_header_only: bool, send_pathsend: bool) -> None:
        if send_header_only or send_pathsend or self.stat_result is None or self.stat_result.st_size >= self.chunk_size:
            return await super()._handle_simple(send, send_header_only, send_pathsend)
        body = await anyio.to_thread.run_sync(Path(self.path).read_bytes)
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _media_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


@router.get("/audio/{filename}")
@policy()
async def audio(service: Service, filename: str) -> FileResponse:
    path, stat = await _existing(service, filename)
    return AudioFileResponse(path, media_type=_media_type(path), stat_result=stat)


@router.get("/audiocache/{filename}")
@policy()
async def audio_cache(service: Service, filename: str) -> FileResponse:
    """The same file as a download that browsers may cache for a week."""
    path, stat = await _existing(service, filename)
    return AudioFileResponse(path, media_type=_media_type(path), filename=path.name, stat_result=stat,
                             headers={"Cache-Control": f"public, max-age={_CACHE_SECONDS}"})

"""The voice library over the API: upload an XTTS voice (reference clips), a Piper voice (model
and config) or an RVC voice (model and optional index), and remove one. A new voice is listed by
`/api/voices`, `/v1/audio/voices` and `/api/rvcvoices` as soon as its upload answers. Uploading
and removing are control operations (`@policy(Access.ADMIN)`: an admin key when admin keys are set)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import BaseModel

from ..config.app_args import VoiceLibraryArgs
from ..rvc_requests import RvcUnavailable
from ..service import SpeechService
from ..voices.library import VoiceLibrary
from ..voices.uploads import Received, VoiceUploads
from .deps import Client, Voices
from .errors import detail, error_shape
from .route_policy import Access, BodyLimit, policy

router = APIRouter(tags=["voices"])

Name = Annotated[str, Form(description="The voice's name: 1-100 letters, digits, '_', '-' or '.'.")]
Replace = Annotated[bool, Form(description="Replace a stored voice of that name (otherwise 409).")]


class VoiceStored(BaseModel):
    voice: str
    """The name clients use for it: `<name>.wav` or `voiceset:<name>` (XTTS), `<name>/<name>.onnx`
    (Piper), `<name>/<name>.pth` (RVC)."""
    engine: str
    name: str


class VoiceProblem(BaseModel):
    detail: str


def _errors(*statuses: int) -> dict[int | str, dict[str, object]]:
    meaning = {400: "not a usable voice, or a name that is not plain (nothing is written)",
               401: "no API key, or an unknown one", 403: "an admin key is needed, or the client's voice quota is full",
               404: "no voice of that name", 409: "the name is taken (send replace=true to replace a voice)",
               413: "a file or the whole upload is over its size limit",
               503: "no replica of the engine that checks the voice runs now"}
    return {status: {"model": VoiceProblem, "description": meaning[status]} for status in statuses}


UPLOAD_ERRORS = _errors(400, 401, 403, 409, 413, 503)


class VoiceRemoved(BaseModel):
    status: Literal["success"]
    engine: str
    name: str


def voice_uploads(service: SpeechService, args: VoiceLibraryArgs) -> VoiceUploads:
    """The app's uploads: Piper voices checked by a Piper replica, RVC voices by an RVC replica."""
    async def check_piper(files: list[str]) -> None:
        await service.engines.client("piper").check_voice_files(files)

    async def check_rvc(files: list[str]) -> None:
        if service.rvc.converter is None:
            raise RvcUnavailable("no RVC converter runs on this server to check the voice (install the rvc extra, "
                                 "or deploy the rvc application)")
        await service.rvc.converter.check_voice_files(files)

    paths = service.settings.paths
    return VoiceUploads(paths, VoiceLibrary(paths, args.max_voices_per_client), args.clips, args.max_file_bytes,
                        check_piper, check_rvc)


def _received(upload: UploadFile) -> Received:
    return Received(upload.filename or "", upload.file)


@router.post("/api/voices/xtts", status_code=201, response_model=VoiceStored,
             responses=_errors(400, 401, 403, 409, 413))
@error_shape(detail)
@policy(Access.ADMIN, body=BodyLimit.VOICE_UPLOAD)
async def upload_xtts_voice(voices: Voices, client: Client, name: Name,
                            files: Annotated[list[UploadFile], File(description=(
                                "1-5 reference clips of one speaker, any format FFmpeg decodes, each 3-30 s of "
                                "sound: stored as mono 22,050 Hz WAV, silence trimmed, loudness normalised; one "
                                "clip makes `<name>.wav`, several a voice set `voiceset:<name>`."))],
                            replace: Replace = False) -> dict[str, str]:
    voice = await voices.add_xtts(name, [_received(f) for f in files], replace, client)
    return {"voice": voice, "engine": "xtts", "name": name}


@router.post("/api/voices/piper", status_code=201, response_model=VoiceStored, responses=UPLOAD_ERRORS)
@error_shape(detail)
@policy(Access.ADMIN, body=BodyLimit.VOICE_UPLOAD)
async def upload_piper_voice(voices: Voices, client: Client, name: Name,
                             model: Annotated[UploadFile, File(description="The voice's `.onnx` model.")],
                             config: Annotated[UploadFile, File(description="Its `.onnx.json` config.")],
                             replace: Replace = False) -> dict[str, str]:
    voice = await voices.add_piper(name, _received(model), _received(config), replace, client)
    return {"voice": voice, "engine": "piper", "name": name}


@router.post("/api/voices/rvc", status_code=201, response_model=VoiceStored, responses=UPLOAD_ERRORS)
@error_shape(detail)
@policy(Access.ADMIN, body=BodyLimit.VOICE_UPLOAD)
async def upload_rvc_voice(voices: Voices, client: Client, name: Name,
                           model: Annotated[UploadFile, File(description=(
                               "The voice's `.pth` (weights and plain data only: a file that carries code is "
                               "refused)."))],
                           index: Annotated[UploadFile | None, File(description="Its FAISS `.index`.")] = None,
                           replace: Replace = False) -> dict[str, str]:
    voice = await voices.add_rvc(name, _received(model), _received(index) if index else None, replace, client)
    return {"voice": voice, "engine": "rvc", "name": name}


@router.delete("/api/voices/{engine}/{name}", response_model=VoiceRemoved, responses=_errors(400, 401, 403, 404))
@error_shape(detail)
@policy(Access.ADMIN, body=BodyLimit.VOICE_UPLOAD)
async def remove_voice(voices: Voices, engine: Literal["xtts", "piper", "rvc"], name: str) -> dict[str, str]:
    """Removes the voice `name` (as given at upload). Requests already speaking with it finish."""
    await voices.remove(engine, name)
    return {"status": "success", "engine": engine, "name": name}

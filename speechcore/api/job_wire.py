"""The job API's wire format: what `POST /api/jobs` takes (JSON, or a multipart form with the text
as an uploaded UTF-8 `.txt` in `file`) and how a job is described. Field names are those of
`/api/tts-generate` (and `voice`, `response_format` of `/v1/audio/speech`); every field but the
text is optional, with the server's defaults."""

from __future__ import annotations

import json
import time

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.datastructures import UploadFile

from ..audio.formats import AUDIO_FORMATS
from ..jobs.records import JobRecord
from .contract_error import ContractError
from .generate_form import GenerateForm

JOB_FORMATS = sorted(name for name in AUDIO_FORMATS if name != "vorbis")


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str = Field(description="The text to speak (up to `max_job_characters`).")
    response_format: str = Field("wav", description=f"The audio file's format: one of {', '.join(JOB_FORMATS)}.")
    engine: str | None = Field(None, description="A live engine other than the current one.")
    voice: str | None = Field(None, description="The voice, as `/v1/audio/speech` names it (`character_voice_gen`).")
    character_voice_gen: str | None = None
    text_filtering: str | None = None
    rvccharacter_voice_gen: str | None = None
    rvccharacter_pitch: float | None = None
    narrator_enabled: str | None = Field(None, description="`true`, `false` or `silent` (JSON booleans too).")
    narrator_voice_gen: str | None = None
    rvcnarrator_voice_gen: str | None = None
    rvcnarrator_pitch: float | None = None
    text_not_inside: str | None = None
    language: str | None = None
    speed: float | None = None
    pitch: float | None = None
    temperature: float | None = None
    repetition_penalty: float | None = None

    @field_validator("narrator_enabled", mode="before")
    @classmethod
    def _narrator_word(cls, value: object) -> object:
        return str(value).lower() if isinstance(value, bool) else value

    def generate_form(self) -> GenerateForm:
        """The same request as `/api/tts-generate` would take it (its defaults and rules apply)."""
        fields = self.model_dump(exclude={"text", "response_format", "voice"}, exclude_none=True)
        if self.character_voice_gen is None and self.voice is not None:
            fields["character_voice_gen"] = self.voice
        return GenerateForm(text_input=self.text, **fields)


class JobUrls(BaseModel):
    status: str
    audio: str
    captions_srt: str
    captions_vtt: str


class JobAnswer(BaseModel):
    id: str
    state: str = Field(description="queued, running, done, failed or cancelled.")
    engine: str
    response_format: str
    characters: int
    segments_total: int | None = Field(description="Sentences the text was planned into (null until planned).")
    segments_done: int
    audio_seconds: float
    characters_per_second: float | None
    eta_seconds: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    urls: JobUrls


class JobList(BaseModel):
    jobs: list[JobAnswer]


def job_answer(record: JobRecord) -> dict[str, object]:
    now = time.time()
    base = f"/api/jobs/{record.id}"
    rate = record.rate(now)
    return {
        "id": record.id, "state": record.state.value, "engine": record.engine,
        "response_format": record.response_format, "characters": record.characters,
        "segments_total": record.lines_total, "segments_done": record.lines_done,
        "audio_seconds": round(record.audio_s, 3),
        "characters_per_second": None if rate is None else round(rate, 1),
        "eta_seconds": None if (eta := record.eta_s(now)) is None else round(eta, 1),
        "created_at": record.created_at, "started_at": record.started_at, "finished_at": record.finished_at,
        "error": record.error,
        "urls": {"status": base, "audio": f"{base}/audio", "captions_srt": f"{base}/captions.srt",
                 "captions_vtt": f"{base}/captions.vtt"},
    }


async def read_job_request(request: Request) -> JobRequest:
    """The request's JSON body or multipart form; 422 (FastAPI's shape) for fields that do not
    validate, 400 for a body that is not JSON or a file that is not UTF-8 text, 415 otherwise."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form()
        fields: dict[str, object] = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        upload = form.get("file")
        if isinstance(upload, UploadFile):
            try:
                fields["text"] = (await upload.read()).decode("utf-8-sig")
            except UnicodeDecodeError:
                raise ContractError(400, {"detail": "file: must be UTF-8 text"}) from None
    elif content_type == "application/json":
        try:
            fields = json.loads(await request.body())
        except ValueError as exc:
            raise ContractError(400, {"detail": f"the body is not JSON: {exc}"}) from None
        if not isinstance(fields, dict):
            raise ContractError(400, {"detail": "the body must be a JSON object"})
    else:
        raise ContractError(415, {"detail": "send the job as application/json, or multipart/form-data with the "
                                            "text as a .txt file in `file`"})
    try:
        return JobRequest.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None

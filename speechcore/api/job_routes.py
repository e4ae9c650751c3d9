"""Long texts as jobs: `POST /api/jobs` queues one and answers at once (202); the job's status,
its audio and captions once done, and `DELETE` to cancel it (or remove a finished one). A job is
its submitter's: another client asking for it gets 404."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse

from ..audio.formats import AUDIO_FORMATS
from ..jobs.desk import JobDesk
from ..orders import SpeechOrder
from .contract_error import ContractError
from .deps import Client, Pipeline, Service
from .errors import detail, error_shape
from .generate_form import GenerateInvalid, decode_generate
from .job_wire import JOB_FORMATS, JobAnswer, JobList, JobRequest, job_answer, read_job_request
from .route_policy import BodyLimit, policy

router = APIRouter(tags=["jobs"])
CAPTION_TYPES = {"srt": "application/x-subrip", "vtt": "text/vtt"}


async def _desk(request: Request) -> JobDesk:
    return request.app.state.jobs.desk


Jobs = Annotated[JobDesk, Depends(_desk)]
SUBMIT_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": JobRequest.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "The text, as a UTF-8 .txt file."},
        **{name: {"type": "string"} for name in JobRequest.model_fields if name != "text"}}}},
}}}


@router.post("/api/jobs", status_code=202, response_model=JobAnswer, openapi_extra=SUBMIT_BODY)
@error_shape(detail)
@policy(body=BodyLimit.JOB)
async def submit_job(request: Request, service: Service, pipeline: Pipeline, jobs: Jobs,
                     client: Client) -> JSONResponse:
    """Queues a long text for synthesis and answers at once, before any of it is spoken."""
    body = await read_job_request(request)
    if body.response_format not in JOB_FORMATS:
        raise ContractError(400, {"detail": [f"response_format: must be one of {', '.join(JOB_FORMATS)}"]})
    order = await _job_order(service, pipeline, body, jobs.args.max_job_characters)
    record = await jobs.submit(order, AUDIO_FORMATS[body.response_format].name, client)
    return JSONResponse(job_answer(record), status_code=202, headers={"Location": f"/api/jobs/{record.id}"})


async def _job_order(service: Service, pipeline: Pipeline, body: JobRequest, max_characters: int) -> SpeechOrder:
    """The request with `/api/tts-generate`'s defaults and rules (its problems, all at once, as 400),
    and its engine, voices and RVC checked; the text is planned later, by the job."""
    problems = [] if body.text.strip() else ["text: must not be empty or only white space"]
    try:
        _params, order = await decode_generate(service, body.generate_form(), max_characters)
    except GenerateInvalid as invalid:
        problems += [p.replace("text_input:", "text:", 1) for p in invalid.problems]
    if problems:
        raise ContractError(400, {"detail": problems})
    order = dataclasses.replace(order, text_field="text")
    await pipeline.check(order)
    return order


@router.get("/api/jobs", response_model=JobList)
@error_shape(detail)
@policy()
async def list_jobs(jobs: Jobs, client: Client) -> dict[str, object]:
    """The caller's jobs, oldest first."""
    return {"jobs": [job_answer(record) for record in await jobs.list(client)]}


@router.get("/api/jobs/{job_id}", response_model=JobAnswer)
@error_shape(detail)
@policy()
async def job_status(job_id: str, jobs: Jobs, client: Client) -> dict[str, object]:
    return job_answer(await jobs.get(job_id, client))


@router.get("/api/jobs/{job_id}/audio", response_class=FileResponse)
@error_shape(detail)
@policy()
async def job_audio(job_id: str, jobs: Jobs, client: Client) -> FileResponse:
    """The whole audio, in the job's format (409 until the job is done)."""
    record = await jobs.get(job_id, client)
    audio_format = AUDIO_FORMATS[record.response_format]
    path = await jobs.result(job_id, client, f"audio.{audio_format.extension}")
    return FileResponse(path, media_type=audio_format.content_type, filename=f"job-{job_id}.{audio_format.extension}")


@router.get("/api/jobs/{job_id}/captions.{kind}", response_class=FileResponse)
@error_shape(detail)
@policy()
async def job_captions(job_id: str, kind: str, jobs: Jobs, client: Client) -> FileResponse:
    """Every sentence's timing in the audio, as SubRip (`srt`) or WebVTT (`vtt`)."""
    if kind not in CAPTION_TYPES:
        raise ContractError(404, {"detail": "captions are captions.srt or captions.vtt"})
    path = await jobs.result(job_id, client, f"captions.{kind}")
    return FileResponse(path, media_type=CAPTION_TYPES[kind], filename=f"job-{job_id}.{kind}")


@router.delete("/api/jobs/{job_id}", response_model=JobAnswer)
@error_shape(detail)
@policy()
async def cancel_job(job_id: str, jobs: Jobs, client: Client) -> dict[str, object]:
    """Cancels an unfinished job (its sentences in flight stop; its files are removed); a finished
    job is removed with its files."""
    return job_answer(await jobs.cancel(job_id, client))

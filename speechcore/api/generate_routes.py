"""Generation endpoints: `/api/tts-generate` (§4), `/api/previewvoice/` (§6B.1) and
`/api/tts-generate-streaming` (§5). Each decodes its request into a SpeechOrder, has the pipeline
plan and render (or stream) it, and encodes the answer."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated

from fastapi import APIRouter, Form, Query
from fastapi.responses import StreamingResponse

from ..audio.formats import AUDIO_FORMATS
from ..orders import Role, SpeechOrder
from ..storage import SAFE_FILENAME
from ..streaming import encode_stream
from .answers import GenerateAnswer, NamedFileAnswer, PreviewAnswer
from .contract_error import ContractError
from .deps import Pipeline, Service
from .errors import detail, error_shape, generate_failure, invalid_value
from .generate_form import GenerateForm, GenerateInvalid, decode_generate
from .route_policy import policy
from .speech_files import output_urls, save_audio, save_wav_named, transcode_format

router = APIRouter(tags=["generation"])
WAV = AUDIO_FORMATS["wav"]
GENERATE_RESPONSES: dict[int | str, dict[str, object]] = {200: {
    "model": GenerateAnswer, "description": "The file's URLs; with `streaming=true`, the audio itself",
    "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}}}


@router.post("/api/tts-generate", response_model=None, responses=GENERATE_RESPONSES)
@error_shape(generate_failure)
@policy(speaks=True)
async def tts_generate(service: Service, pipeline: Pipeline,
                       form: Annotated[GenerateForm, Form()]) -> dict[str, object] | StreamingResponse:
    """Speaks `text_input` into a file under the output folder and answers its URLs; with
    `streaming=true` (standard mode) answers the audio itself as a WAV stream."""
    config = service.settings.config
    try:
        params, order = await decode_generate(service, form, config.api_def.api_max_characters)
    except GenerateInvalid as invalid:
        raise ContractError(400, {"error": "\n".join(invalid.problems)}) from None
    if form.streaming:
        if order.narration is not None:
            raise ContractError.generate_failure(400, "streaming=true works in standard mode only; send "
                                                      "narrator_enabled=false or leave streaming out")
        first, rest = await pipeline.stream(await pipeline.plan(order))
        return StreamingResponse(encode_stream(first, rest, WAV), media_type="audio/wav")
    chunks = await pipeline.render(await pipeline.plan(order))
    suffix = "" if order.narration is None else "_combined"
    path = await asyncio.to_thread(save_audio, service.outputs(), chunks, transcode_format(config),
                                   params.output_file_name, params.output_file_timestamp, suffix)
    return {"status": "generate-success", "output_file_path": str(path), **output_urls(config.api_def, path.name)}


def preview_text(voice: str) -> str:
    """The fixed preview sentence, naming the voice as AllTalk cleans it."""
    name = voice.replace(" ", "_").removesuffix(".wav")
    return f"Hello, this is a preview of the voice {re.sub(r'[^A-Za-z0-9]', ' ', name)}."


@router.post("/api/previewvoice/", response_model=PreviewAnswer)
@error_shape(invalid_value)
@policy(speaks=True)
async def preview_voice(service: Service, pipeline: Pipeline, voice: Annotated[str, Form()],
                        rvccharacter_voice_gen: Annotated[str, Form()] = "Disabled",
                        rvccharacter_pitch: Annotated[float, Form()] = 0) -> dict[str, object]:
    """A short fixed sentence in `voice` (§6B.1: English, speed 1.0, pitch 0). Without the
    trailing slash the server answers 307."""
    order = SpeechOrder(text=preview_text(voice), character=Role(voice, rvccharacter_voice_gen, rvccharacter_pitch),
                        language="en", speed=1.0, pitch=0.0)
    chunks = await pipeline.render(await pipeline.plan(order))
    path = await asyncio.to_thread(save_audio, service.outputs(), chunks, None, "api_preview_voice", False)
    return {"status": "generate-success", "output_file_path": str(path), "output_file_url": f"/audio/{path.name}"}


def streaming_order(service: Service, text: str, voice: str, language: str, streaming: bool) -> SpeechOrder:
    """§5: no filtering, narrator or RVC; speed 1.0 and pitch 0 (AllTalk passes a pitch no engine
    uses), the engine's temperature and repetition penalty; at most `api_max_characters`."""
    return SpeechOrder(text=text, character=Role(voice), language=language, speed=1.0, pitch=0.0,
                       max_characters=service.settings.config.api_def.api_max_characters, streaming=streaming)


@router.get("/api/tts-generate-streaming", response_class=StreamingResponse)
@error_shape(invalid_value)
@policy(speaks=True)
async def tts_generate_streaming(service: Service, pipeline: Pipeline, text: Annotated[str, Query()],
                                 voice: Annotated[str, Query()], language: Annotated[str, Query()],
                                 output_file: Annotated[str, Query()]) -> StreamingResponse:
    """`audio/wav` with a length-unknown header, then 16-bit mono PCM as the engine speaks.
    `output_file` is accepted for compatibility; nothing is written."""
    first, rest = await pipeline.stream(await pipeline.plan(streaming_order(service, text, voice, language, True)))
    return StreamingResponse(encode_stream(first, rest, WAV), media_type="audio/wav")


@router.post("/api/tts-generate-streaming", response_model=NamedFileAnswer)
@error_shape(detail)
@policy(speaks=True)
async def tts_generate_streaming_post(service: Service, pipeline: Pipeline, text: Annotated[str, Form()],
                                      voice: Annotated[str, Form()], language: Annotated[str, Form()],
                                      output_file: Annotated[str, Form()]) -> dict[str, object]:
    """Despite the name, not a stream (as AllTalk): writes `<output_file>.wav` in the output folder
    and echoes the name."""
    if not SAFE_FILENAME.fullmatch(output_file):
        raise ContractError(400, {"detail": "output_file must be a plain file name (letters, digits, '_', '-', '.'), "
                                            "without folders"})
    plan = await pipeline.plan(streaming_order(service, text, voice, language, False))
    chunks = await pipeline.render(plan)
    await asyncio.to_thread(save_wav_named, service.outputs(), f"{output_file}.wav", chunks)
    return {"output_file_path": output_file}

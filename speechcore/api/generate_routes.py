"""Generation endpoints: `/api/tts-generate` (§4), `/api/previewvoice/` (§6B.1) and
`/api/tts-generate-streaming` (§5)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query
from fastapi.responses import StreamingResponse

from ..contract import GenerateForm
from .deps import Generation

router = APIRouter(tags=["generation"])


@router.post("/api/tts-generate", response_model=None)
async def tts_generate(generation: Generation, form: Annotated[GenerateForm, Form()]) -> dict[str, object] | StreamingResponse:
    """Speaks `text_input` into a file under the output folder and answers its URLs; with
    `streaming=true` (standard mode) answers the audio itself as a WAV stream."""
    if form.streaming:
        return StreamingResponse(await generation.generate_stream(form), media_type="audio/wav")
    return await generation.generate(form)


@router.post("/api/previewvoice/")
async def preview_voice(generation: Generation, voice: Annotated[str, Form()],
                        rvccharacter_voice_gen: Annotated[str, Form()] = "Disabled",
                        rvccharacter_pitch: Annotated[float, Form()] = 0) -> dict[str, object]:
    """A short fixed sentence in `voice`. Without the trailing slash the server answers 307."""
    return await generation.preview(voice, rvccharacter_voice_gen, rvccharacter_pitch)


@router.get("/api/tts-generate-streaming", response_class=StreamingResponse)
async def tts_generate_streaming(generation: Generation, text: Annotated[str, Query()], voice: Annotated[str, Query()],
                                 language: Annotated[str, Query()], output_file: Annotated[str, Query()]) -> StreamingResponse:
    """`audio/wav` with a length-unknown header, then 16-bit mono PCM as the engine speaks.
    `output_file` is accepted for compatibility; nothing is written."""
    body = await generation.open_stream(text, voice, language)
    return StreamingResponse(body, media_type="audio/wav")


@router.post("/api/tts-generate-streaming")
async def tts_generate_streaming_post(generation: Generation, text: Annotated[str, Form()], voice: Annotated[str, Form()],
                                      language: Annotated[str, Form()], output_file: Annotated[str, Form()]) -> dict[str, object]:
    """Despite the name, not a stream (as AllTalk): writes `<output_file>.wav` in the output folder."""
    return await generation.generate_named(text, voice, language, output_file)

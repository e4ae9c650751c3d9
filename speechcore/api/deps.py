"""How routes reach the services: they live on the app, set once by create_app. The getters are
coroutines because FastAPI runs a plain function dependency in its thread pool: a thread hop per
dependency per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..pipeline import SpeechPipeline
from ..service import SpeechService
from ..voices.uploads import VoiceUploads
from .generations import GenerationsInFlight


async def _service(request: Request) -> SpeechService:
    return request.app.state.service


async def _pipeline(request: Request) -> SpeechPipeline:
    return request.app.state.pipeline


async def _generations(request: Request) -> GenerationsInFlight:
    return request.app.state.generations


async def _client(request: Request) -> str:
    """Who asks (set by the access middleware: the API key, or the address without keys)."""
    return getattr(request.state, "client", None) or f"addr:{request.client.host if request.client else '?'}"


async def _voices(request: Request) -> VoiceUploads:
    return request.app.state.voices


Service = Annotated[SpeechService, Depends(_service)]
Pipeline = Annotated[SpeechPipeline, Depends(_pipeline)]
Generations = Annotated[GenerationsInFlight, Depends(_generations)]
Client = Annotated[str, Depends(_client)]
Voices = Annotated[VoiceUploads, Depends(_voices)]

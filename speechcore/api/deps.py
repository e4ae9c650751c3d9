"""How routes reach the services: they live on the app, set once by create_app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..generation import GenerationService
from ..openai_speech import OpenAISpeechService
from ..service import SpeechService
from .generations import GenerationsInFlight


def _service(request: Request) -> SpeechService:
    return request.app.state.service


def _generation(request: Request) -> GenerationService:
    return request.app.state.generation


def _openai(request: Request) -> OpenAISpeechService:
    return request.app.state.openai


def _generations(request: Request) -> GenerationsInFlight:
    return request.app.state.generations


Service = Annotated[SpeechService, Depends(_service)]
Generation = Annotated[GenerationService, Depends(_generation)]
OpenAI = Annotated[OpenAISpeechService, Depends(_openai)]
Generations = Annotated[GenerationsInFlight, Depends(_generations)]

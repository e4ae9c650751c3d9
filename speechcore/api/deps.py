"""How routes reach the services: they live on the app, set once by create_app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..pipeline import SpeechPipeline
from ..service import SpeechService
from .generations import GenerationsInFlight


def _service(request: Request) -> SpeechService:
    return request.app.state.service


def _pipeline(request: Request) -> SpeechPipeline:
    return request.app.state.pipeline


def _generations(request: Request) -> GenerationsInFlight:
    return request.app.state.generations


Service = Annotated[SpeechService, Depends(_service)]
Pipeline = Annotated[SpeechPipeline, Depends(_pipeline)]
Generations = Annotated[GenerationsInFlight, Depends(_generations)]

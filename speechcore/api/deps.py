"""How routes reach the service: it lives on the app, set once by create_app."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..service import SpeechService


def _service(request: Request) -> SpeechService:
    return request.app.state.service


Service = Annotated[SpeechService, Depends(_service)]

"""The AllTalk HTTP API as a FastAPI app over a SpeechService (no Ray here)."""

from .app import create_app

__all__ = ["create_app"]

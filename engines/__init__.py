"""Plain-Python TTS engines behind one protocol (engines/base.py). No Ray, no FastAPI."""

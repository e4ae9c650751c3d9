"""Audio streams for HTTP responses: chunks encoded as they arrive (the pipeline's stream has
already produced the first one, so errors before any audio got their status)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from .audio.encode import stream_encoder
from .audio.formats import AudioFormat
from .audio.pcm import PcmChunk
from .cancellation import GenerationStopped
from .engine_client import EngineUnavailable
from .engine_types import EngineError

_LOGGER = logging.getLogger(__name__)


async def encode_stream(first: PcmChunk, rest: AsyncIterator[PcmChunk], fmt: AudioFormat) -> AsyncIterator[bytes]:
    """Encoded bytes as the chunks come. A stop request or an engine failure after the first byte
    cannot change the status any more: the stream then ends early (the encoder is still closed
    properly, so what was sent decodes)."""
    encoder = stream_encoder(fmt, first.sample_rate)
    try:
        yield encoder.write(first)
        async for chunk in rest:
            if data := encoder.write(chunk):
                yield data
    except GenerationStopped:
        _LOGGER.info("stream stopped by a stop request")
    except (EngineError, EngineUnavailable) as exc:
        _LOGGER.warning("stream ended early: %s", exc)
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
    if tail := encoder.finish():
        yield tail

"""Home Assistant's Wyoming protocol (wyoming_front.py) through the `wyoming` package's own client:
describe, synthesize, and the streaming synthesis of Wyoming 1.7 as Home Assistant sends it
(synthesize-start, chunks, the whole text again as `synthesize` for servers that do not stream,
synthesize-stop). The front speaks through the server's API over real HTTP: in process (uvicorn)
and behind real Serve."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from embedded_proxy import free_ports
from tests.conftest import BUNDLED_VOICE, SECOND_VOICE
from wyoming_front import RATE, WyomingArgs, serve_wyoming

TEXT = "The lighthouse keeper climbed the stairs. The storm was coming in from the west."
VOICE = SynthesizeVoice(name=BUNDLED_VOICE)


@contextlib.asynccontextmanager
async def wyoming(api_url: str, **settings) -> AsyncIterator[AsyncTcpClient]:
    """The front on a free port, and a client connected to it."""
    [port] = free_ports(1)
    started = asyncio.Event()
    front = asyncio.create_task(serve_wyoming(WyomingArgs(api_url=api_url, host="127.0.0.1", port=port,
                                                          **settings), started))
    await asyncio.wait_for(started.wait(), 30)
    try:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            yield client
    finally:
        front.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await front


async def next_event(client: AsyncTcpClient) -> Event:
    event = await asyncio.wait_for(client.read_event(), 60)
    assert event is not None, "the front closed the connection"
    return event


async def audio_until(client: AsyncTcpClient, last: str) -> tuple[list[Event], bytes]:
    events = [await next_event(client)]
    while events[-1].type != last:
        assert not Error.is_type(events[-1].type), events[-1].data
        events.append(await next_event(client))
    audio = b"".join(AudioChunk.from_event(e).audio for e in events if AudioChunk.is_type(e.type))
    return events, audio


def seconds(audio: bytes) -> float:
    return len(audio) / 2 / RATE


def test_describe_lists_the_servers_voices_with_their_languages(api_url):
    async def check() -> None:
        async with wyoming(api_url) as client:
            await client.write_event(Describe().event())
            info = Info.from_event(await next_event(client))
        [program] = info.tts
        voices = {voice.name: voice for voice in program.voices}
        assert program.supports_synthesize_streaming and voices[BUNDLED_VOICE].languages == ["en_US"]

    asyncio.run(check())


def test_synthesize_answers_audio_start_chunks_and_stop_in_the_named_voice(api_url):
    async def check() -> None:
        async with wyoming(api_url) as client:
            await client.write_event(Synthesize(text=TEXT, voice=VOICE).event())
            events, audio = await audio_until(client, AudioStop().event().type)
            await client.write_event(Synthesize(text=TEXT, voice=SynthesizeVoice(name=SECOND_VOICE)).event())
            _, second = await audio_until(client, AudioStop().event().type)
        start = AudioStart.from_event(events[0])
        assert (start.rate, start.width, start.channels) == (RATE, 2, 1)
        assert 3.0 < seconds(audio) < 9.0
        assert seconds(second) > 1.4 * seconds(audio)  # the second voice speaks more slowly

    asyncio.run(check())


def test_streaming_synthesis_speaks_a_sentence_before_the_text_ends(api_url):
    async def check() -> None:
        async with wyoming(api_url) as client:
            await client.write_event(SynthesizeStart(voice=VOICE).event())
            for word in "The storm came in at dusk. The keeper".split(" "):
                await client.write_event(SynthesizeChunk(text=word + " ").event())
            first = [await next_event(client), await next_event(client)]  # before the text has ended
            assert AudioStart.is_type(first[0].type) and AudioChunk.is_type(first[1].type)
            await client.write_event(SynthesizeChunk(text="lit the lamp.").event())
            # Home Assistant also sends the whole text, for servers that do not stream: ignored here.
            await client.write_event(Synthesize(text="The storm came in at dusk. The keeper lit the lamp.",
                                                voice=VOICE).event())
            await client.write_event(SynthesizeStop().event())
            events, audio = await audio_until(client, SynthesizeStopped().event().type)
        assert [e.type for e in events[-2:]] == ["audio-stop", "synthesize-stopped"]
        assert 1.5 < seconds(AudioChunk.from_event(first[1]).audio + audio) < 8.0

    asyncio.run(check())


def test_an_unknown_voice_is_an_error_event_and_the_connection_stays(api_url):
    async def check() -> None:
        async with wyoming(api_url) as client:
            await client.write_event(Synthesize(text=TEXT, voice=SynthesizeVoice(name="nobody")).event())
            events, _ = await audio_until(client, Error(text="").event().type)
            assert Error.from_event(events[-1]).code == "voice_not_found"
            await client.write_event(Synthesize(text="Still here.", voice=VOICE).event())
            _, audio = await audio_until(client, AudioStop().event().type)
            assert seconds(audio) > 0.3
            # The same in a streaming synthesis: the server's reason, whichever event meets the closed stream.
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="nobody")).event())
            for word in TEXT.split(" "):
                await client.write_event(SynthesizeChunk(text=word + " ").event())
            await client.write_event(SynthesizeStop().event())
            events, _ = await audio_until(client, Error(text="").event().type)
            assert Error.from_event(events[-1]).code == "voice_not_found"

    asyncio.run(check())


def test_an_address_outside_the_allowed_networks_is_refused(uvicorn_url):
    async def check() -> None:
        async with wyoming(uvicorn_url, allowed_networks=["10.0.0.0/8"]) as client:
            refused = Error.from_event(await next_event(client))
            assert refused.code == "forbidden"
            assert await asyncio.wait_for(client.read_event(), 10) is None

    asyncio.run(check())

"""The ingress's view of an engine application, through real Serve handles."""

import asyncio

import pytest

from deployments.cluster_signals import ClusterStopSignal
from deployments.handles import HandleEngineClient
from deployments.rollout import ServeRollout
from speechcore.cancellation import GenerationStopped
from speechcore.engine_client import EngineUnavailable
from speechcore.engine_types import SynthesisRequest, UnknownVoice

pytestmark = pytest.mark.serve


def collect(client, request):
    async def run():
        return [chunk async for chunk in client.synthesize(request)]
    return asyncio.run(run())


def test_chunks_stream_one_per_sentence_at_the_voice_rate(serve_server):
    request = SynthesisRequest(text="One sentence here. Another one there. And a third.", voice="en_US-joe-medium.onnx")
    chunks = collect(HandleEngineClient("piper", "tts-piper", ServeRollout(), 5), request)
    assert len(chunks) == 3
    assert {c.sample_rate for c in chunks} == {22050}


def test_an_engine_error_arrives_as_itself_with_its_message(serve_server):
    with pytest.raises(UnknownVoice) as caught:
        collect(
            HandleEngineClient("piper", "tts-piper", ServeRollout(), 5),
            SynthesisRequest(text="Hi.", voice="missing.onnx"),
        )
    assert "missing.onnx" in str(caught.value)
    assert "Traceback" not in str(caught.value) and "ray::" not in str(caught.value)


def test_describe_and_serving_state(serve_server):
    client = HandleEngineClient("piper", "tts-piper", ServeRollout(), 5)
    info = asyncio.run(client.describe())
    assert info.engine == "piper" and "en_US-joe-medium.onnx" in info.voices
    assert asyncio.run(client.is_serving()) is True


def test_an_application_that_is_not_deployed_is_unavailable(serve_server):
    client = HandleEngineClient("parler", "tts-parler", ServeRollout(), 5)
    assert asyncio.run(client.is_serving()) is False
    with pytest.raises(EngineUnavailable):
        asyncio.run(client.describe())


def test_a_cluster_stop_ends_an_engine_stream_between_chunks(serve_server):
    """The replica reads the stop epoch every STOP_POLL_S (1 s), so a few more sentences may come
    before it sees the stop; the text is long enough (about 15 s of synthesis here) that a stop it
    never saw would show as the whole text arriving."""
    sentences = 120
    text = " ".join(f"This is sentence number {i} of a long text." for i in range(sentences))
    client = HandleEngineClient("piper", "tts-piper", ServeRollout(), 5)

    async def run():
        got = []
        with pytest.raises(GenerationStopped):
            async for chunk in client.synthesize(SynthesisRequest(text=text, voice="en_US-joe-medium.onnx")):
                got.append(chunk)
                if len(got) == 2:
                    await asyncio.to_thread(ClusterStopSignal().raise_stop)
        return got

    got = asyncio.run(run())
    assert 2 <= len(got) < sentences // 2, "the replica ends the generation soon after the stop"


def test_piper_replicas_share_load_instead_of_routing_by_voice(serve_server):
    """serve_config.yaml turns voice affinity off for Piper: the engine says so, and the ingress then
    sends no multiplexed model id, so Serve balances a voice's requests over every replica."""
    client = HandleEngineClient("piper", "tts-piper", ServeRollout(), 5)
    assert asyncio.run(client.describe()).voice_affinity is False
    sent = []

    class Recording:
        def options(self, **options):
            sent.append(options)
            return self

        @property
        def synthesize(self):
            return self

        def remote(self, request):
            raise EngineUnavailable("recorded")

    async def route(client):
        client.calls._handle = Recording()
        with pytest.raises(EngineUnavailable):
            await anext(client.synthesize(SynthesisRequest(text="Hi.", voice="en_US-joe-medium.onnx")))

    asyncio.run(route(client))
    fresh = HandleEngineClient("piper", "tts-piper", ServeRollout(), 5)  # no description yet: Serve's default
    asyncio.run(route(fresh))
    assert "multiplexed_model_id" not in sent[0]
    assert sent[1]["multiplexed_model_id"] == "en_US-joe-medium.onnx"


def test_an_engine_that_sends_nothing_ends_the_request_with_a_timeout():
    """A hung or unreachable replica: the ingress stops waiting after the chunk timeout (the API
    answers 504) and cancels the call."""
    from deployments.engine_calls import relay
    from speechcore.engine_client import EngineTimeout

    class Silent:
        cancelled = False

        def __aiter__(self):
            return self

        async def __anext__(self):
            await asyncio.sleep(3600)

        def cancel(self):
            Silent.cancelled = True

    async def run():
        async for _ in relay(Silent(), "piper", chunk_timeout_s=0.1, first_chunk_timeout_s=0.1):
            pass

    with pytest.raises(EngineTimeout, match="sent nothing for 0.1 s"):
        asyncio.run(run())
    assert Silent.cancelled

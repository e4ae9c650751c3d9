"""Continuous batching of XTTS (engines/xtts_batcher.py) on a tiny random model, without Ray:
with deterministic decoding (top-k 1) every request's audio tokens are those coqui's own
`generate` draws for it alone, however many rows share the steps and whenever they join or leave."""

import contextlib
import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("TTS", reason="the coqui extra is not installed")

from engines.xtts import BatchOptions, load_xtts  # noqa: E402
from engines.xtts_batcher import Voice, XttsStream  # noqa: E402
from engines.xtts_sampling import Sampling  # noqa: E402
from tests.coqui_models import build_tiny_xtts  # noqa: E402

GREEDY = Sampling(top_k=1)
SENTENCES = ["hello there, how are you today?", "a much longer sentence that goes on and on for quite a while.",
             "short.", "the fourth one"]
MAX_TOKENS = 40


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folder = build_tiny_xtts(tmp_path_factory.mktemp("xtts") / "tiny", max_audio_tokens=MAX_TOKENS)
    return load_xtts("tiny", folder, torch.device("cpu"), False,
                     BatchOptions(max_batch=8, chunk_tokens=6, first_chunk_tokens=3))


@pytest.fixture(scope="module")
def voice(loaded):
    generator = torch.Generator().manual_seed(3)
    return Voice(torch.randn(1, 32, loaded.model.gpt.model_dim, generator=generator) * 0.5,
                 torch.randn(1, 512, 1, generator=generator) * 0.1)


class StepGate:
    """A batcher's `on_step` that holds its thread between steps until the test lets it go on, so
    that a join or a close lands at a chosen step rather than wherever the thread has run to.
    Open gates let every step through; `rows` is what each step ran, as `on_step` is told."""

    def __init__(self, open_: bool = False):
        self.rows: list[int] = []
        self._open, self._allowed, self._held = open_, 0, False
        self._changed = threading.Condition()

    def __call__(self, rows: int) -> None:  # in the batcher's thread, in the middle of a step
        with self._changed:
            self.rows.append(rows)
            self._held = not self._open and not self._allowed
            self._changed.notify_all()
            assert self._changed.wait_for(lambda: self._open or self._allowed, timeout=120), "held for ever"
            self._held = False
            if not self._open:
                self._allowed -= 1

    def hold(self) -> None:
        with self._changed:
            self._open, self._allowed = False, 0

    def release(self) -> None:
        with self._changed:
            self._open = True
            self._changed.notify_all()

    def _until(self, condition, what: str) -> None:
        deadline = time.monotonic() + 120
        while not condition():
            assert time.monotonic() < deadline, what
            self._changed.wait(0.05)

    def wait_held(self) -> None:
        """Until the thread is held between two steps (at its first, at the start)."""
        with self._changed:
            self._until(lambda: self._held, "the batcher was never held")

    def step(self, finished=lambda: False) -> None:
        """Lets one step finish: returns when the thread is held at the next one, or when
        `finished()` (the last rows ended: the thread stops without another step)."""
        with self._changed:
            self._until(lambda: self._held or finished(), "the batcher was never held")
            if not self._held:
                return
            before = len(self.rows)
            self._allowed += 1
            self._changed.notify_all()
            self._until(lambda: (self._held and len(self.rows) > before) or finished(),
                        "the batcher took no further step")

    def step_until(self, condition, limit: int = MAX_TOKENS) -> None:
        """Steps one at a time until `condition()` holds at a step boundary (within `limit` steps)."""
        for _ in range(limit):
            if condition():
                return
            self.step()
        assert condition(), f"not reached within {limit} steps"


@contextlib.contextmanager
def gated(batcher, gate: StepGate):
    batcher.on_step = gate
    try:
        yield gate
    finally:
        gate.release()
        batcher.on_step = lambda rows: None


def tokens_of(loaded, text: str, lang: str = "en") -> torch.Tensor:
    return torch.tensor(loaded.model.tokenizer.encode(text, lang=lang), dtype=torch.long).unsqueeze(0)


def stream(loaded, voice, texts, sampling=GREEDY, speed=1.0, lang: str = "en") -> XttsStream:
    return loaded.batcher.submit(XttsStream([tokens_of(loaded, t, lang) for t in texts], voice, sampling, speed,
                                            24000))


def coqui_generate(loaded, voice, text: str, lang: str = "en") -> list[int]:
    """What coqui's own (unbatched) generate draws for one sentence with top-k 1."""
    with torch.no_grad():
        out = loaded.model.gpt.generate(
            cond_latents=voice.gpt_cond_latent,
            text_inputs=tokens_of(loaded, text, lang).int(),
            do_sample=True,
            top_k=1,
            top_p=GREEDY.top_p,
            temperature=GREEDY.temperature,
            repetition_penalty=GREEDY.repetition_penalty,
            num_return_sequences=1,
            num_beams=1,
            length_penalty=1.0,
            output_attentions=False,
        )
    return out[0].tolist()


@pytest.fixture(scope="module")
def coqui_tokens(loaded, voice):
    """What coqui's own (unbatched) generate draws for each sentence with top-k 1."""
    return {text: coqui_generate(loaded, voice, text) for text in SENTENCES}


def test_alone_a_request_draws_what_coqui_draws(loaded, voice, coqui_tokens):
    for text in SENTENCES:
        alone = stream(loaded, voice, [text])
        chunks = list(alone)
        assert alone.tokens == [coqui_tokens[text]]
        assert len(chunks) >= 2, "sub-sentence chunks"


def test_rows_joining_at_different_steps_draw_what_they_draw_alone(loaded, voice, coqui_tokens):
    with gated(loaded.batcher, StepGate()) as gate:
        streams = []
        for text in SENTENCES:  # each joins once the one before has audio: a batch already running
            streams.append(stream(loaded, voice, [text]))
            gate.step_until(lambda: streams[-1].started_audio)
        gate.release()
        for s in streams:
            list(s)
    assert [s.tokens for s in streams] == [[coqui_tokens[t]] for t in SENTENCES]
    assert max(gate.rows) == len(SENTENCES), "all four shared steps"


def test_a_request_of_several_sentences_beside_others(loaded, voice, coqui_tokens):
    long = stream(loaded, voice, SENTENCES[:3])
    next(long)
    short = stream(loaded, voice, [SENTENCES[3]])
    list(short)
    list(long)
    assert long.tokens == [coqui_tokens[t] for t in SENTENCES[:3]]
    assert short.tokens == [coqui_tokens[SENTENCES[3]]]


def test_rows_with_their_own_sampling_settings_do_not_change_a_greedy_row(loaded, voice, coqui_tokens):
    torch.manual_seed(0)
    warm = [
        stream(loaded, voice, [SENTENCES[1]], Sampling(temperature=t, top_k=k, top_p=p, repetition_penalty=r))
        for t, k, p, r in ((1.0, 50, 0.85, 2.0), (0.5, 10, 0.5, 10.0))
    ]
    greedy = stream(loaded, voice, [SENTENCES[0]])
    list(greedy)
    sampled = [list(s) and s.tokens[0] for s in warm]
    assert greedy.tokens == [coqui_tokens[SENTENCES[0]]]
    assert all(tokens != coqui_tokens[SENTENCES[1]] for tokens in sampled), "the sampled rows did sample"


def test_a_row_stopped_mid_way_leaves_and_the_others_are_undisturbed(loaded, voice, coqui_tokens):
    left = []
    loaded.batcher.on_row_left = lambda: left.append(1)
    with contextlib.ExitStack() as restore, gated(loaded.batcher, StepGate()) as gate:
        restore.callback(setattr, loaded.batcher, "on_row_left", lambda: None)
        keep = stream(loaded, voice, [SENTENCES[0]])
        stopped = stream(loaded, voice, [SENTENCES[1], SENTENCES[2]])
        gate.step_until(lambda: stopped.started_audio)
        assert next(stopped).frames > 0
        stopped.close()  # while the batcher is held: the row leaves before the next step
        steps_at_close = len(gate.rows)
        gate.release()
        assert list(stopped) == [], "a closed stream ends"
        list(keep)
    assert set(gate.rows[steps_at_close:]) == {1}, "only the kept row stepped after the close"
    assert left == [1], "the batcher told of the row that left"
    assert keep.tokens == [coqui_tokens[SENTENCES[0]]]
    assert len(stopped.tokens) == 1 and len(stopped.tokens[0]) < MAX_TOKENS, "it left before its sentence ended"
    after = stream(loaded, voice, [SENTENCES[2]])
    list(after)
    assert after.tokens == [coqui_tokens[SENTENCES[2]]], "the batcher serves on"


def test_streamed_chunks_join_into_the_audio_of_coquis_whole_sentence_inference(loaded, voice):
    """Bounded-window decoding gives the length of coqui's whole-sentence `inference` (the same
    tokens, decoded at once) and, up to the cross-faded seams, its samples."""
    streamed = stream(loaded, voice, [SENTENCES[1]])
    audio = np.concatenate([np.frombuffer(c.pcm, dtype="<i2") / 32767.0 for c in streamed])
    whole = loaded.model.inference(
        SENTENCES[1], "en", voice.gpt_cond_latent, voice.speaker_embedding, do_sample=True, top_k=1
    )["wav"]
    assert len(audio) == len(whole)
    assert np.corrcoef(audio, np.clip(whole, -1, 1))[0, 1] > 0.99


def test_speed_stretches_the_audio(loaded, voice):
    normal = sum(c.frames for c in stream(loaded, voice, [SENTENCES[0]]))
    slow = sum(c.frames for c in stream(loaded, voice, [SENTENCES[0]], speed=0.5))
    assert slow == pytest.approx(2 * normal, rel=0.05)


def test_more_requests_than_rows_wait_for_a_row(loaded, voice, coqui_tokens):
    """Two rows, four requests: at every step at most two streams have joined and not ended, and
    the third and fourth join only once one of the first two has ended."""
    before = loaded.batcher.max_batch
    loaded.batcher.max_batch = 2
    try:
        with gated(loaded.batcher, StepGate()) as gate:
            streams = [stream(loaded, voice, [text]) for text in SENTENCES]
            readers = [threading.Thread(target=list, args=(s,)) for s in streams]
            for reader in readers:
                reader.start()
            gate.wait_held()
            steps = []  # at each step: (the streams that have joined, those that have ended)
            while not all(s.closed for s in streams):
                steps.append(({i for i, s in enumerate(streams) if s.first_joined is not None},
                              {i for i, s in enumerate(streams) if s.closed}))
                gate.step(finished=lambda: all(s.closed for s in streams))
            for reader in readers:
                reader.join(60)
    finally:
        loaded.batcher.max_batch = before
    assert max(gate.rows) == 2 and max(len(joined - ended) for joined, ended in steps) == 2
    for late in (2, 3):
        joined_at = next(k for k, (joined, _) in enumerate(steps) if late in joined)
        assert steps[joined_at][1] & {0, 1}, f"request {late + 1} joined before a row was free"
    assert [s.tokens for s in streams] == [[coqui_tokens[t]] for t in SENTENCES]


@pytest.fixture
def two_models(tmp_path):
    """An XTTS engine over two tiny models (`xtts - a`, `xtts - b`) and a saved-latents voice."""
    return xtts_engine(tmp_path, stream_chunk_tokens=4)


def xtts_engine(tmp_path, **settings):
    import json

    from engines.base import EngineOptions
    from engines.coqui_common import ModelFolders
    from engines.xtts import REQUIRED_FILES, XttsEngine

    for name in ("a", "b"):
        build_tiny_xtts(tmp_path / "models" / name, max_audio_tokens=MAX_TOKENS)
    (tmp_path / "voices" / "xtts_latents").mkdir(parents=True)
    (tmp_path / "voices" / "xtts_latents" / "v.json").write_text(
        json.dumps(
            {
                "gpt_cond_latent": [[[0.01 * ((i + j) % 7) for j in range(64)] for i in range(8)]],
                "speaker_embedding": [[[0.001 * (i % 11)] for i in range(512)]],
            }
        )
    )
    return XttsEngine(
        ModelFolders(tmp_path / "models", "xtts", REQUIRED_FILES),
        tmp_path / "voices",
        EngineOptions(max_batch=4),
        **settings,
    )


def test_requests_in_one_batch_each_keep_their_own_language(tmp_path):
    """The language is the first text token of each of a request's rows (`[en]`, `[de]`): an English
    and a German request sharing the batch's steps each keep theirs. (The tiny random model draws
    the same audio tokens whatever the language, so the rows' text tokens are what is compared.)"""
    from speechcore.engine_types import SynthesisRequest

    engine = xtts_engine(tmp_path)
    engine.select_model("xtts - a")
    loaded = engine.slot.current()
    submit, heads, submitted = loaded.batcher.submit, [], threading.Semaphore(0)

    def recorded(stream):
        heads.append([int(sentence[0, 0]) for sentence in stream.sentences])
        answer = submit(stream)
        submitted.release()
        return answer

    loaded.batcher.submit = recorded
    requests = [SynthesisRequest(text="Hello there. And again.", voice="latent:v.json", language=lang, top_k=1)
                for lang in ("en", "de")]
    with gated(loaded.batcher, StepGate()) as gate:  # held until both requests are in
        streams = [engine.synthesize(engine.load_voice(r.voice), r) for r in requests]
        readers = [threading.Thread(target=list, args=(s,)) for s in streams]
        for reader in readers:
            reader.start()
        assert submitted.acquire(timeout=60) and submitted.acquire(timeout=60)
        gate.release()
        for reader in readers:
            reader.join(60)
    language_token = {lang: loaded.model.tokenizer.encode("x", lang=lang)[0] for lang in ("en", "de")}
    assert language_token["en"] != language_token["de"]
    assert sorted(heads) == sorted([[language_token[r.language]] * 2 for r in requests]), heads
    assert max(gate.rows) == 2, "the two requests shared steps"


def test_by_default_the_first_chunk_comes_after_6_tokens_then_one_every_20(tmp_path):
    """An engine made as a replica makes it streams each sentence's first chunk after 6 audio tokens,
    then one per 20 (the last may be shorter): counted where the batcher hands tokens to the decoder."""
    from speechcore.engine_types import SynthesisRequest

    engine = xtts_engine(tmp_path)
    engine.select_model("xtts - a")
    batcher = engine.slot.current().batcher
    decode, per_chunk = batcher.decoder.decode, []

    def counted(items):
        per_chunk.extend(len(audio.latents) - audio.decoded for audio, _ended in items)
        return decode(items)

    batcher.decoder.decode = counted
    request = SynthesisRequest(text=SENTENCES[1], voice="latent:v.json", top_k=1)
    chunks = list(engine.synthesize(engine.load_voice(request.voice), request))
    assert len(chunks) == len(per_chunk) and sum(per_chunk) > 26, per_chunk
    assert per_chunk[:2] == [6, 20] and all(0 < n <= 20 for n in per_chunk[2:]), per_chunk


def test_a_model_swap_lets_running_rows_finish_on_the_old_model(two_models):
    """The engine's batcher belongs to the loaded model: a request in flight when the model
    changes finishes on the old one; the next one runs on the new one."""
    from speechcore.engine_types import SynthesisRequest

    engine = two_models
    request = SynthesisRequest(text=SENTENCES[1], voice="latent:v.json", top_k=1)
    engine.select_model("xtts - a")
    old_batcher = engine.slot.current().batcher
    with gated(old_batcher, StepGate()) as gate:
        running = engine.synthesize(engine.load_voice(request.voice), request)
        got: list = []
        reader = threading.Thread(target=lambda: got.append(next(running)))
        reader.start()
        gate.step_until(lambda: got)  # its first audio, and the row still running (held)
        reader.join(60)
        engine.select_model("xtts - b")  # loads while the old batcher is held between steps
        steps_at_swap = len(gate.rows)
        gate.release()
        rest = list(running)
    assert got[0].frames > 0 and sum(c.frames for c in rest) > 0, "the running request finished"
    assert len(gate.rows) > steps_at_swap, "on the old model's batcher"
    after = engine.synthesize(engine.load_voice(request.voice), request)
    list(after)
    assert engine.slot.current().batcher is not old_batcher
    assert engine.info().current_model == "xtts - b"


def test_requests_keep_running_while_the_next_model_loads(two_models):
    """A real XTTS takes about 18 s to load on a GPU. Meanwhile the rows running on the old model go
    on stepping (a row that ends releases the model from the batcher's own thread) and new requests
    are served on it; the load here is held until they are done."""
    from speechcore.engine_types import SynthesisRequest

    engine = two_models
    engine.select_model("xtts - a")
    load, loading, release = engine.slot.loader, threading.Event(), threading.Event()

    def held_load(name, folder, device):
        loading.set()
        release.wait(120)  # released by the test once it has seen what it looks for (or not)
        return load(name, folder, device)

    engine.slot.loader = held_load
    request = SynthesisRequest(text=SENTENCES[0], voice="latent:v.json", top_k=1)
    running = engine.synthesize(engine.load_voice(request.voice), request)
    next(running)
    swap = threading.Thread(target=engine.select_model, args=("xtts - b",))
    swap.start()
    try:
        assert loading.wait(30)
        finished = {}

        def finish(name, stream):
            finished[name] = sum(chunk.frames for chunk in stream())

        readers = [threading.Thread(target=finish, args=("running", lambda: running), daemon=True),
                   threading.Thread(target=finish, daemon=True, args=(
                       "new", lambda: engine.synthesize(engine.load_voice(request.voice), request)))]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(30)
        assert finished.keys() == {"running", "new"} and all(finished.values()), "both spoke while the load ran"
        assert swap.is_alive() and engine.info().current_model == "xtts - a"
    finally:
        release.set()
        swap.join(60)
    assert engine.info().current_model == "xtts - b"

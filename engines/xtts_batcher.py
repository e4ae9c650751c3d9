"""XttsBatcher: continuous batching for one loaded XTTS model.

Every request is a stream of sentences. A sentence is a row of the running batch from the step
its prefix is computed to the step it emits its stop token or reaches the model's limit; then the
stream's next sentence joins again, ahead of newcomers. Each iteration of the batcher's thread:
1. drops the rows of streams that were closed (stopped, client gone) and admits waiting rows up to
   `max_batch`;
2. steps the running rows once, and prefills the admitted ones in one forward (only their text:
   the keys and values of a voice's conditioning latents are computed once and reused);
3. draws one token per row with that row's own settings (xtts_sampling);
4. decodes the chunks that are due (every `chunk_tokens` latents, `first_chunk_tokens` for a
   request's first chunk so that audio starts sooner, and at a sentence's end) with a bounded
   window (xtts_decode), and hands each to its stream.
Rows never wait for each other beyond one step, and a request stopped mid-way leaves between two
steps without disturbing the others. The thread runs while there is work and ends when idle; one
batcher serves one model, so after a model swap the rows in flight finish on the old one.

A stream is read by blocking iteration (a plain iterator, usable without any server); closing it
is how a caller stops it."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

import torch

from speechcore.audio.pcm import PcmChunk
from speechcore.engine_types import EngineError

from .base import StepTimer
from .xtts_decode import SentenceAudio, WindowedDecoder
from .xtts_gpt import BatchedGpt
from .xtts_sampling import RowSampler, Sampling

_LOGGER = logging.getLogger(__name__)
_END = object()
VOICE_PREFIXES = 16
"""Voices whose conditioning keys and values a batcher keeps (about 8 MB each for XTTS v2)."""
PREFIX_PLACEHOLDER_ID = 1
"""coqui feeds `generate` placeholder ids of 1 for the prefix: they count as seen tokens for the
repetition penalty, and so they do here."""


@dataclass
class Voice:
    gpt_cond_latent: torch.Tensor  # (1, latents, channels)
    speaker_embedding: torch.Tensor  # (1, channels, 1)


class XttsStream:
    """One request's audio, chunk by chunk. Iterating blocks until the next chunk is ready."""

    def __init__(self, sentences: list[torch.Tensor], voice: Voice, sampling: Sampling, speed: float,
                 sample_rate: int, on_retire: Callable[[], None] = lambda: None):
        """`on_retire` runs once, in the batcher's thread, when the batch is done with the stream
        (finished, failed, or closed and dropped): the model it used may then be released."""
        self.sentences = deque(sentences)
        self.voice, self.sampling, self.speed, self.sample_rate = voice, sampling, speed, sample_rate
        self.tokens: list[list[int]] = []  # per sentence, the audio tokens drawn (for tests and logs)
        self.closed = False
        self.started_audio = False
        self.submitted = time.perf_counter()
        self.first_joined: float | None = None
        self._chunks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._on_retire = on_retire
        self._retired = False

    @property
    def queue_wait_s(self) -> float | None:
        """From submission to its first sentence joining the batch (None before that)."""
        return None if self.first_joined is None else self.first_joined - self.submitted

    def __iter__(self) -> "XttsStream":
        return self

    def __next__(self) -> PcmChunk:
        item = self._chunks.get()
        if item is _END:
            self._chunks.put(_END)  # a later call ends too
            raise StopIteration
        if isinstance(item, BaseException):
            self._chunks.put(_END)
            raise item
        return item

    def close(self) -> None:
        """Stops the stream: its row leaves the batch before the next step."""
        if not self.closed:
            self.closed = True
            self._chunks.put(_END)

    # ----- called by the batcher's thread

    def _put(self, item: Any) -> None:
        if not self.closed:
            self._chunks.put(item)

    def _retire(self, error: BaseException | None = None) -> None:
        """The batch is done with this stream: its reader gets the error, if any, then the end."""
        if error is not None:
            self._put(error)
        self._put(_END)
        self.closed = True
        if not self._retired:
            self._retired = True
            self._on_retire()


@dataclass
class _Row:
    stream: XttsStream
    text_tokens: torch.Tensor
    audio: SentenceAudio
    tokens: list[int] = field(default_factory=list)


class XttsBatcher:
    def __init__(self, model: Any, max_batch: int, chunk_tokens: int, first_chunk_tokens: int | None = None,
                 decoder: WindowedDecoder | None = None, time_step: StepTimer = contextlib.nullcontext,
                 on_step: Callable[[int], None] = lambda rows: None, on_row_left: Callable[[], None] = lambda: None):
        """`model` is a loaded coqui `Xtts`; `on_step(rows)` is told how many rows each step ran,
        `on_row_left()` of each row that leaves before its sentence ended (its stream was closed)."""
        self.model, self.max_batch, self.chunk_tokens = model, max_batch, chunk_tokens
        self.first_chunk_tokens = first_chunk_tokens or chunk_tokens
        self.gpt = model.gpt
        self.decoder = decoder or WindowedDecoder(model.hifigan_decoder)
        self.time_step = time_step
        self.on_step, self.on_row_left = on_step, on_row_left
        self._waiting: deque[_Row] = deque()
        self._prefixes: OrderedDict[int, tuple[weakref.ref, list[tuple[torch.Tensor, torch.Tensor]]]] = OrderedDict()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, stream: XttsStream) -> XttsStream:
        """Queues the stream's first sentence; its chunks arrive on the stream."""
        row = self._next_row(stream)
        if row is None:
            stream._retire()
            return stream
        with self._lock:
            self._waiting.append(row)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="xtts-batcher", daemon=True)
                self._thread.start()
        return stream

    def _next_row(self, stream: XttsStream) -> _Row | None:
        if not stream.sentences:
            return None
        stream.tokens.append([])
        return _Row(stream, stream.sentences.popleft(), SentenceAudio(stream.voice.speaker_embedding, stream.speed))

    # ----- the batcher's thread

    def _run(self) -> None:
        running: list[_Row] = []
        batch = BatchedGpt(self.gpt)
        sampler = RowSampler(self.gpt.num_audio_tokens, self.model.device)
        while True:
            running = self._leave(running, batch, sampler, [r for r in running if not r.stream.closed])
            with self._lock:
                joining = self._admit(self.max_batch - len(running))
                if not running and not joining:
                    self._thread = None
                    return
            try:
                with self.time_step(), torch.inference_mode():
                    running = self._iterate(running, joining, batch, sampler)
            except Exception as exc:  # noqa: BLE001 - every row in the batch fails with it, the thread goes on
                _LOGGER.exception("XTTS batch step failed; failing its %d row(s)", len(running) + len(joining))
                error = EngineError(f"XTTS synthesis failed: {type(exc).__name__}: {exc}")
                for row in running + joining:
                    row.stream._retire(error)
                running = []
                batch, sampler = BatchedGpt(self.gpt), RowSampler(self.gpt.num_audio_tokens, self.model.device)

    def _admit(self, free: int) -> list[_Row]:
        joining = []
        while self._waiting and len(joining) < free:
            row = self._waiting.popleft()
            if row.stream.closed:
                row.stream._retire()
            else:
                joining.append(row)
        return joining

    def _iterate(self, running: list[_Row], joining: list[_Row], batch: BatchedGpt,
                 sampler: RowSampler) -> list[_Row]:
        logits, latents = [], []
        if running:
            out = batch.step(torch.tensor([r.tokens[-1] for r in running], dtype=torch.long, device=self.model.device))
            logits.append(out.logits)
            latents.append(out.latents)
        if joining:
            now = time.perf_counter()
            for row in joining:
                row.stream.first_joined = row.stream.first_joined or now
                sampler.add(row.stream.sampling, [PREFIX_PLACEHOLDER_ID, self.gpt.start_audio_token])
            out = batch.join([(self._voice_prefix(batch, r.stream.voice), batch.text_embeddings(r.text_tokens))
                              for r in joining])
            logits.append(out.logits)
            latents.append(out.latents)
        rows = running + joining
        self.on_step(len(rows))
        tokens = sampler.choose(torch.cat(logits)).tolist()
        due: list[tuple[_Row, bool]] = []
        for row, token, latent in zip(rows, tokens, torch.cat(latents)):
            row.tokens.append(token)
            row.stream.tokens[-1].append(token)
            row.audio.latents.append(latent)
            ended = token == self.gpt.stop_audio_token or len(row.tokens) >= self.gpt.max_gen_mel_tokens
            chunk = self.chunk_tokens if row.stream.started_audio else self.first_chunk_tokens
            if ended or len(row.audio.latents) - row.audio.decoded >= chunk:
                due.append((row, ended))
                row.stream.started_audio = True
        if due:
            chunks = self.decoder.decode([(row.audio, ended) for row, ended in due])
            for (row, _), chunk in zip(due, chunks):
                row.stream._put(PcmChunk.from_float(chunk.float().cpu().numpy(), row.stream.sample_rate))
        ended_rows = {id(row) for row, ended in due if ended}
        for row in rows:
            if id(row) in ended_rows:
                self._sentence_done(row)
        return self._leave(rows, batch, sampler, [r for r in rows if id(r) not in ended_rows and not r.stream.closed],
                           ended_rows)

    def _voice_prefix(self, batch: BatchedGpt, voice: Voice) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The voice's conditioning keys and values, computed once per latents tensor (a voice's
        latents are one tensor for as long as the engine caches the voice)."""
        key = id(voice.gpt_cond_latent)
        cached = self._prefixes.get(key)
        if cached is not None and cached[0]() is voice.gpt_cond_latent:
            self._prefixes.move_to_end(key)
            return cached[1]
        prefix = batch.voice_prefix(voice.gpt_cond_latent)
        self._prefixes[key] = (weakref.ref(voice.gpt_cond_latent), prefix)
        while len(self._prefixes) > VOICE_PREFIXES:
            self._prefixes.popitem(last=False)
        return prefix

    def _sentence_done(self, row: _Row) -> None:
        following = None if row.stream.closed else self._next_row(row.stream)
        if following is None:
            row.stream._retire()
            return
        with self._lock:
            self._waiting.appendleft(following)  # a started request goes ahead of newcomers

    def _leave(self, rows: list[_Row], batch: BatchedGpt, sampler: RowSampler, staying: list[_Row],
               ended: Container[int] = frozenset()) -> list[_Row]:
        """Keeps `staying` in the batch; a closed stream among the others is retired, and counted
        as leaving early unless its row ended its sentence in this step (`ended`: their ids)."""
        if len(staying) != len(rows):
            stays = {id(row) for row in staying}
            kept = [i for i, row in enumerate(rows) if id(row) in stays]
            batch.keep(kept)
            sampler.keep(kept)
            for row in rows:
                if row.stream.closed and id(row) not in stays:
                    row.stream._retire()
                    if id(row) not in ended:
                        self.on_row_left()
        return staying

"""Turning a sentence's GPT latents into audio chunk by chunk with a bounded window.

coqui's `inference_stream` runs HiFi-GAN over every latent of the sentence so far at each chunk,
so the work for a sentence grows with the square of its length. HiFi-GAN is two cheap linear
stretches (latents to frames of 256 samples) and then the expensive convolutional generator. Here
the stretches run over the whole sentence so far (so every frame is the one a whole-sentence
decode would see) and the generator only over the new frames plus `context` frames before them:
what lies further back barely changes the new samples. The last `overlap` samples are held back
and cross-faded into the next chunk, as coqui does at its chunk seams (the newest frames still
change a little when the next latent arrives). The work per chunk is then bounded, and chunks of
rows that are due in the same step run through the generator in one call when their windows are
the same length."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

CONTEXT_FRAMES = 16
OVERLAP_SAMPLES = 1024


@dataclass
class SentenceAudio:
    """One sentence's latents and how far they have been turned into audio."""

    speaker_embedding: torch.Tensor  # (1, channels, 1)
    speed: float = 1.0
    latents: list[torch.Tensor] = field(default_factory=list)  # (channels,) per token
    decoded: int = 0  # latents already decoded
    emitted: int = 0  # samples of the sentence handed out (the held-back overlap follows)
    held: torch.Tensor | None = None  # the last chunk's held-back samples


class WindowedDecoder:
    def __init__(self, hifigan: torch.nn.Module, context: int = CONTEXT_FRAMES, overlap: int = OVERLAP_SAMPLES):
        self.hifigan, self.context, self.overlap = hifigan, context, overlap
        self.hop = hifigan.output_hop_length

    def frames(self, sentence: SentenceAudio) -> torch.Tensor:
        """(1, channels, frames): the generator's input for the whole sentence so far, stretched
        as HiFi-GAN's own forward does (and first by 1/speed, as coqui's streaming does)."""
        latents = torch.stack(sentence.latents).unsqueeze(0).transpose(1, 2)
        if sentence.speed != 1.0:
            latents = F.interpolate(latents, scale_factor=1.0 / max(sentence.speed, 0.05), mode="linear")
        hifigan = self.hifigan
        frames = F.interpolate(latents, scale_factor=[hifigan.ar_mel_length_compression / self.hop], mode="linear")
        if hifigan.output_sample_rate != hifigan.input_sample_rate:
            frames = F.interpolate(frames, scale_factor=[hifigan.output_sample_rate / hifigan.input_sample_rate],
                                   mode="linear")
        return frames

    def decode(self, due: list[tuple[SentenceAudio, bool]]) -> list[torch.Tensor]:
        """The next chunk (samples, float) of each sentence; `True` beside one marks its last chunk."""
        windows = []
        for sentence, _ in due:
            first = max(0, sentence.emitted // self.hop - self.context)
            windows.append((self.frames(sentence)[:, :, first:], first))
        waves: list[torch.Tensor | None] = [None] * len(due)
        by_length: dict[int, list[int]] = {}
        for i, (frames, _) in enumerate(windows):
            by_length.setdefault(frames.shape[-1], []).append(i)
        for rows in by_length.values():
            frames = torch.cat([windows[i][0] for i in rows])
            speakers = torch.cat([due[i][0].speaker_embedding for i in rows])
            out = self.hifigan.waveform_decoder(frames, g=speakers).reshape(len(rows), -1)
            for j, i in enumerate(rows):
                waves[i] = out[j]
        return [self._chunk(sentence, wave, windows[i][1] * self.hop, final)
                for i, ((sentence, final), wave) in enumerate(zip(due, waves))]

    def _chunk(self, sentence: SentenceAudio, wave: torch.Tensor, offset: int, final: bool) -> torch.Tensor:
        """`offset`: where the window's first sample lies in the sentence."""
        start = sentence.emitted - offset
        end = wave.shape[0] if final else max(start, wave.shape[0] - self.overlap)
        chunk = wave[start:end].clone()
        if sentence.held is not None:
            fade = min(sentence.held.shape[0], chunk.shape[0])
            ramp = torch.linspace(0.0, 1.0, fade, device=chunk.device)
            chunk[:fade] = sentence.held[:fade] * (1 - ramp) + chunk[:fade] * ramp
        sentence.held = None if final else wave[end:]
        sentence.emitted = offset + end
        sentence.decoded = len(sentence.latents)
        return chunk

"""Audio written into the output folder as the generation endpoints answer it: the file's format
(confignew.json's transcoding), its name and the URLs that reach it."""

from __future__ import annotations

from pathlib import Path

from ..audio.encode import encode_whole
from ..audio.formats import AUDIO_FORMATS, AudioFormat
from ..audio.pcm import PcmChunk
from ..audio.wav import write_wav
from ..config.alltalk import AllTalkConfig, ApiDefaults
from ..storage import OutputStore


def transcode_format(config: AllTalkConfig) -> AudioFormat | None:
    """The format `/api/tts-generate` writes (`transcode_audio_format`); None: the engine's WAV."""
    name = config.transcode_audio_format.lower()
    return None if name in ("disabled", "wav") else AUDIO_FORMATS[name]


def save_audio(store: OutputStore, chunks: list[PcmChunk], fmt: AudioFormat | None, base: str, timestamp: bool,
               suffix: str = "") -> Path:
    """A new file `<base>[_<timestamp>]<suffix>.<ext>` (WAV at the engine's rate when `fmt` is None)."""
    if fmt is None:
        rate = chunks[0].sample_rate
        return store.write_new(base, "wav", timestamp, lambda out: write_wav(out, rate, chunks), suffix)
    data = encode_whole(fmt, chunks)
    return store.write_new(base, fmt.extension, timestamp, lambda out: out.write(data), suffix)


def save_wav_named(store: OutputStore, filename: str, chunks: list[PcmChunk]) -> Path:
    rate = chunks[0].sample_rate
    return store.write_named(filename, lambda out: write_wav(out, rate, chunks))


def output_urls(api: ApiDefaults, name: str) -> dict[str, str]:
    """`output_file_url` and `output_cache_url`; absolute on AllTalk's legacy address when the
    settings ask for it."""
    prefix = f"http://{api.api_legacy_ip_address}:{api.api_port_number}" if api.api_use_legacy_api else ""
    return {"output_file_url": f"{prefix}/audio/{name}", "output_cache_url": f"{prefix}/audiocache/{name}"}

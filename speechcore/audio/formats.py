"""The audio formats the API can answer in, and how each is made with FFmpeg (through PyAV)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AudioFormat:
    name: str
    container: str
    """FFmpeg muxer name."""
    codec: str
    """FFmpeg encoder name."""
    extension: str
    content_type: str
    rate: int | None = None
    """Output sample rate; None keeps the engine's rate."""
    layout: str = "mono"
    bit_rate: int | None = None
    container_options: dict[str, str] = field(default_factory=dict)
    codec_options: dict[str, str] = field(default_factory=dict)
    file_container_options: dict[str, str] | None = None
    """Container options for a complete file written to disk, where they differ from streaming's."""

    def for_file(self) -> "AudioFormat":
        """This format as a complete, seekable file is best written (an m4a in one piece, not in
        fragments; its index goes at the end, as FFmpeg moves it forward only in files it opens itself)."""
        if self.file_container_options is None:
            return self
        return dataclasses.replace(self, container_options=self.file_container_options)


_M4A_STREAMABLE = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}

AUDIO_FORMATS: dict[str, AudioFormat] = {f.name: f for f in (
    AudioFormat("wav", "wav", "pcm_s16le", "wav", "audio/wav"),
    AudioFormat("mp3", "mp3", "libmp3lame", "mp3", "audio/mpeg", bit_rate=128_000),
    AudioFormat("opus", "ogg", "libopus", "opus", "audio/ogg", rate=48_000, bit_rate=64_000),
    AudioFormat("aac", "adts", "aac", "aac", "audio/aac", bit_rate=128_000),
    AudioFormat("m4a", "ipod", "aac", "m4a", "audio/mp4", bit_rate=128_000, container_options=_M4A_STREAMABLE,
                file_container_options={}),
    AudioFormat("flac", "flac", "flac", "flac", "audio/flac"),
    # FFmpeg's own Vorbis encoder is marked experimental and only encodes stereo.
    AudioFormat("ogg", "ogg", "vorbis", "ogg", "audio/ogg", layout="stereo",
                codec_options={"strict": "experimental"}),
    # OpenAI's `pcm`: raw signed 16-bit little-endian samples at 24 kHz, no header.
    AudioFormat("pcm", "s16le", "pcm_s16le", "pcm", "audio/L16; rate=24000; channels=1", rate=24_000),
)}
# `transcode_audio_format` calls Ogg Vorbis `vorbis`; files get the usual .ogg extension.
AUDIO_FORMATS["vorbis"] = AUDIO_FORMATS["ogg"]

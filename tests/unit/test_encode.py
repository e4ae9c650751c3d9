"""Every API format encodes with FFmpeg and decodes back with the right rate and duration."""

import numpy as np
import pytest

from speechcore.audio.encode import encode_whole, resample, stream_encoder
from speechcore.audio.formats import AUDIO_FORMATS
from speechcore.audio.pcm import PcmChunk
from tests.support import decode_audio

RATE = 22050


def tone(seconds, rate=RATE):
    t = np.arange(int(seconds * rate)) / rate
    return PcmChunk.from_float(0.3 * np.sin(2 * np.pi * 220 * t), rate)


CONTAINER_FORMATS = [f for f in AUDIO_FORMATS if f != "pcm"]


@pytest.mark.parametrize("name", CONTAINER_FORMATS)
def test_whole_files_decode_with_the_right_duration(name):
    fmt = AUDIO_FORMATS[name]
    audio = decode_audio(encode_whole(fmt, [tone(1.0), tone(0.5)]))
    assert audio.sample_rate == (fmt.rate or RATE)
    assert audio.duration_s == pytest.approx(1.5, abs=0.12)


@pytest.mark.parametrize("name", CONTAINER_FORMATS)
def test_streamed_output_decodes_when_concatenated(name):
    encoder = stream_encoder(AUDIO_FORMATS[name], RATE)
    pieces = [encoder.write(tone(0.5)) for _ in range(4)] + [encoder.finish()]
    assert any(pieces[:-1]), "some bytes leave before the end"
    audio = decode_audio(b"".join(pieces))
    assert audio.duration_s == pytest.approx(2.0, abs=0.15)


def test_pcm_is_raw_16_bit_at_24_khz():
    data = encode_whole(AUDIO_FORMATS["pcm"], [tone(1.0)])
    assert len(data) == pytest.approx(2 * 24000, abs=200)


def test_resample_joins_rates_at_the_target_rate():
    joined = resample([tone(1.0, 22050), tone(1.0, 16000), tone(0.5, 44100)], 44100)
    assert joined.sample_rate == 44100
    assert joined.duration_s == pytest.approx(2.5, abs=0.01)

"""§4.5 narrator mode with the real Piper voice and a second installed voice."""

import pytest

from tests.conftest import BUNDLED_VOICE, SECOND_VOICE
from tests.support import SECOND_VOICE_SLOWER, decode_audio

WIZARD = '*The old wizard gazed at the stars.* "What mysteries do they hold?" *he wondered aloud.*'
SEGMENTS = [("The old wizard gazed at the stars.", SECOND_VOICE), ("What mysteries do they hold?", BUNDLED_VOICE),
            ("he wondered aloud.", SECOND_VOICE)]


def duration(server, url):
    response = server.client.get(url)
    assert response.status_code == 200
    return decode_audio(response.content)


def generate(server, **form):
    response = server.client.post("/api/tts-generate", data=form)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def separate_durations(server):
    return [duration(server, generate(server, text_input=text, character_voice_gen=voice)["output_file_url"]).duration_s
            for text, voice in SEGMENTS]


def test_narration_is_one_44k_wav_as_long_as_its_segments(server, separate_durations):
    body = generate(server, text_input=WIZARD, narrator_enabled="true", narrator_voice_gen=SECOND_VOICE,
                    character_voice_gen=BUNDLED_VOICE)
    assert body["output_file_url"].endswith("_combined.wav")
    audio = duration(server, body["output_file_url"])
    assert (audio.sample_rate, audio.channels, audio.codec) == (44100, 1, "pcm_s16le")
    assert audio.duration_s == pytest.approx(sum(separate_durations), rel=0.08)


def test_each_segment_is_spoken_by_its_own_voice(server, separate_durations):
    """The second voice speaks SECOND_VOICE_SLOWER times slower: with the voices swapped the
    narration is measurably shorter, so a server that ignored either voice would fail here."""
    swapped = duration(server, generate(server, text_input=WIZARD, narrator_enabled="true",
                                        narrator_voice_gen=BUNDLED_VOICE,
                                        character_voice_gen=SECOND_VOICE)["output_file_url"]).duration_s
    narrator, character = separate_durations[0] + separate_durations[2], separate_durations[1]
    expected = narrator / SECOND_VOICE_SLOWER + character * SECOND_VOICE_SLOWER
    assert swapped == pytest.approx(expected, rel=0.08)
    assert swapped < 0.9 * sum(separate_durations)


def test_silent_drops_the_narrator_text(server, separate_durations):
    body = generate(server, text_input=WIZARD, narrator_enabled="silent", narrator_voice_gen=SECOND_VOICE,
                    character_voice_gen=BUNDLED_VOICE)
    audio = duration(server, body["output_file_url"])
    assert audio.duration_s == pytest.approx(separate_durations[1], rel=0.2)
    assert audio.duration_s < 0.6 * sum(separate_durations)

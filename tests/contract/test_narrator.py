"""§4.5 narrator mode with the real Piper voice and a second installed voice."""

import pytest

from tests.conftest import BUNDLED_VOICE, SECOND_VOICE
from tests.support import decode_audio

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
    assert audio.duration_s == pytest.approx(sum(separate_durations), rel=0.12)


def test_each_segment_is_spoken_by_its_own_voice(server, separate_durations):
    """The second voice speaks slower: with the voices swapped, the narration is as long as its
    segments spoken by the swapped voices, far from the unswapped length, so a server that ignored
    either voice would fail here."""
    swapped = duration(server, generate(server, text_input=WIZARD, narrator_enabled="true",
                                        narrator_voice_gen=BUNDLED_VOICE,
                                        character_voice_gen=SECOND_VOICE)["output_file_url"]).duration_s
    other = {SECOND_VOICE: BUNDLED_VOICE, BUNDLED_VOICE: SECOND_VOICE}
    expected = sum(duration(server, generate(server, text_input=text, character_voice_gen=other[voice])
                            ["output_file_url"]).duration_s for text, voice in SEGMENTS)
    assert swapped == pytest.approx(expected, rel=0.1)  # Piper's durations vary a little from run to run
    assert abs(swapped - expected) < 0.5 * abs(sum(separate_durations) - expected)  # far from the unswapped


def test_silent_drops_the_narrator_text(server, separate_durations):
    body = generate(server, text_input=WIZARD, narrator_enabled="silent", narrator_voice_gen=SECOND_VOICE,
                    character_voice_gen=BUNDLED_VOICE)
    audio = duration(server, body["output_file_url"])
    assert audio.duration_s == pytest.approx(separate_durations[1], rel=0.2)
    assert audio.duration_s < 0.6 * sum(separate_durations)

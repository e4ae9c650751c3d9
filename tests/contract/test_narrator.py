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
def spoken(server) -> dict[tuple[str, str], float]:
    """Each segment's length spoken alone by each voice; the second voice is clearly slower, so
    the length of a narration shows which voice spoke which segment."""
    lengths = {(text, voice): duration(server, generate(server, text_input=text, character_voice_gen=voice)
                                       ["output_file_url"]).duration_s
               for text, _ in SEGMENTS for voice in (BUNDLED_VOICE, SECOND_VOICE)}
    for text, _ in SEGMENTS:
        assert lengths[text, SECOND_VOICE] > 1.4 * lengths[text, BUNDLED_VOICE], text
    return lengths


@pytest.fixture
def separate_durations(spoken):
    return [spoken[text, voice] for text, voice in SEGMENTS]


def test_narration_is_one_44k_wav_as_long_as_its_segments(server, separate_durations):
    body = generate(server, text_input=WIZARD, narrator_enabled="true", narrator_voice_gen=SECOND_VOICE,
                    character_voice_gen=BUNDLED_VOICE)
    assert body["output_file_url"].endswith("_combined.wav")
    audio = duration(server, body["output_file_url"])
    assert (audio.sample_rate, audio.channels, audio.codec) == (44100, 1, "pcm_s16le")
    assert audio.duration_s == pytest.approx(sum(separate_durations), rel=0.12)


def test_each_segment_is_spoken_by_its_own_voice(server, spoken):
    """With the voices swapped, the narration is as long as its segments spoken by the swapped
    voices: a server that ignored either voice would fail here."""
    swapped = duration(server, generate(server, text_input=WIZARD, narrator_enabled="true",
                                        narrator_voice_gen=BUNDLED_VOICE,
                                        character_voice_gen=SECOND_VOICE)["output_file_url"]).duration_s
    other = {SECOND_VOICE: BUNDLED_VOICE, BUNDLED_VOICE: SECOND_VOICE}
    expected = sum(spoken[text, other[voice]] for text, voice in SEGMENTS)
    unswapped = sum(spoken[text, voice] for text, voice in SEGMENTS)
    assert swapped == pytest.approx(expected, rel=0.1)  # Piper's durations vary a little from run to run
    assert abs(swapped - expected) < 0.5 * abs(unswapped - expected)


def test_silent_drops_the_narrator_text(server, separate_durations):
    body = generate(server, text_input=WIZARD, narrator_enabled="silent", narrator_voice_gen=SECOND_VOICE,
                    character_voice_gen=BUNDLED_VOICE)
    audio = duration(server, body["output_file_url"])
    assert audio.duration_s == pytest.approx(separate_durations[1], rel=0.2)
    assert audio.duration_s < 0.6 * sum(separate_durations)

"""`max_narrator_segments`: a narrated text that splits into more segments than allowed is a 400
naming the count and the limit, and nothing is synthesized or written."""

from __future__ import annotations

from tests.conftest import BUNDLED_VOICE


def test_a_text_with_too_many_narrator_segments_is_a_400(server):
    server.outputs.mkdir(exist_ok=True)
    before = set(server.outputs.iterdir())
    text = ' '.join(['*Now.* "Yes."'] * 101)  # 202 segments; the default limit is 200
    response = server.client.post("/api/tts-generate", data={
        "text_input": text, "narrator_enabled": "true", "narrator_voice_gen": BUNDLED_VOICE,
        "character_voice_gen": BUNDLED_VOICE})
    assert response.status_code == 400
    assert response.json() == {"error": "text_input splits into 202 narrator segments; at most 200 are allowed "
                                        "per request"}
    assert set(server.outputs.iterdir()) == before
    within = ' '.join(['*Now.* "Yes."'] * 3)
    ok = server.client.post("/api/tts-generate", data={
        "text_input": within, "narrator_enabled": "true", "narrator_voice_gen": BUNDLED_VOICE,
        "character_voice_gen": BUNDLED_VOICE})
    assert ok.status_code == 200 and ok.json()["status"] == "generate-success"

"""§6B.4–§6B.6: the TTS Generator page's list, subtitles and analysis."""

import json

import pytest

from tests.support import decode_audio


def test_save_tts_data_writes_the_list_and_srt_times_its_files(server):
    urls = [server.client.post("/api/tts-generate", data={"text_input": text}).json()["output_file_url"]
            for text in ("Hello there.", "A second, somewhat longer line of speech.")]
    durations = [decode_audio(server.client.get(url).content).duration_s for url in urls]
    entries = [{"id": i, "fileUrl": url, "text": f"Line {i}", "characterVoice": "v", "language": "en"}
               for i, url in enumerate(urls)]
    entries.append({"id": 9, "fileUrl": "/audio/missing.wav", "text": "gone", "characterVoice": "v", "language": "en"})
    response = server.client.post("/api/save-tts-data", json=entries)
    assert response.status_code == 200
    assert response.json() == {"message": "Data saved successfully"}
    assert json.loads((server.outputs / "ttsList.json").read_text()) == entries

    srt = server.client.get("/api/srt-generation")
    assert srt.status_code == 200
    assert srt.headers["content-type"] == "application/octet-stream"
    assert 'filename="subtitles.srt"' in srt.headers["content-disposition"]
    cues = srt.text.strip().split("\n\n")
    assert len(cues) == 2, "the missing file is skipped"
    number, times, text = cues[1].split("\n")
    start, end = times.split(" --> ")
    assert (number, text) == ("2", "Line 1")

    def seconds(stamp):
        h, m, rest = stamp.split(":")
        s, ms = rest.split(",")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    assert seconds(start) == pytest.approx(durations[0], abs=0.002)
    assert seconds(end) == pytest.approx(durations[0] + durations[1], abs=0.002)


@pytest.mark.parametrize("body", [{"ttsList": []}, [{"id": "x"}], "text"])
def test_save_tts_data_needs_a_bare_array_of_entries(server, body):
    assert server.client.post("/api/save-tts-data", json=body).status_code == 422


def test_srt_without_a_saved_list_is_404(server):
    (server.outputs / "ttsList.json").unlink(missing_ok=True)
    response = server.client.get("/api/srt-generation")
    assert response.status_code == 404
    assert response.json() == {"detail": "TTS list file not found"}


def test_trigger_analysis_is_a_clear_501(server):
    response = server.client.get("/api/trigger-analysis", params={"threshold": 95})
    assert response.status_code == 501
    assert response.json()["status"] == "error"

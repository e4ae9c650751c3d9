"""Long texts as jobs, over the API in process and over real HTTP on real Serve: a narrated
two-voice job to mp3 and m4a with captions that fit the audio, cancelling, the limits, and bad
requests that change nothing."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time

import av
import numpy as np
import pytest

from tests.conftest import BUNDLED_VOICE, SECOND_VOICE
from tests.support import decode_audio

STORY = ('The keeper climbed the narrow stairs. "Is the lamp lit?" asked the boy at the door. He nodded and '
         'smiled. "Then the ships will find the harbour," the boy said. The storm came in the night.')
SENTENCES = ["The keeper climbed the narrow stairs.", "Is the lamp lit?", "asked the boy at the door.",
             "He nodded and smiled.", "Then the ships will find the harbour,", "the boy said.",
             "The storm came in the night."]
"""The story's sentences in document order; the quoted ones in the character's voice."""
QUOTED = {1, 4}
FINISHED = ("done", "failed", "cancelled")


def wait_for_job(client, job_id: str, states=FINISHED, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        body = client.get(f"/api/jobs/{job_id}").json()
        if body["state"] in states or time.monotonic() > deadline:
            return body
        time.sleep(0.25)


def claim_in_force(folder, timeout_s: float = 30) -> dict:
    """The job's claim that holds: the highest `claim.<n>` of its folder (asked again while one is
    being replaced by the next)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        claims = sorted(folder.glob("claim.*"), key=lambda p: int(p.suffix[1:]))
        with contextlib.suppress(IndexError, FileNotFoundError):
            return json.loads(claims[-1].read_text())
        time.sleep(0.05)
    raise AssertionError(f"no claim in {folder}")


def wait_for_release(folder, timeout_s: float = 60) -> None:
    """Until the runner that held the job has let it go: the claim in force says released, written
    after its lines stopped and its files were removed."""
    deadline = time.monotonic() + timeout_s
    while not claim_in_force(folder).get("released"):
        assert time.monotonic() < deadline, f"the job in {folder} was not released within {timeout_s} s"
        time.sleep(0.1)


def pcm_of(data: bytes) -> tuple[np.ndarray, int]:
    """Mono float samples and rate of a file in any format, decoded as a player would."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray().astype(np.float64) for frame in container.decode(stream)]
        samples = np.concatenate([f.reshape(-1, f.shape[-1]).mean(axis=0) for f in frames])
        return samples, stream.rate


def parse_cues(srt: str) -> list[tuple[float, float, str]]:
    stamp = r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)"
    cues = []
    for block in srt.strip().split("\n\n"):
        found = re.search(f"{stamp} --> {stamp}\n(.+)", block)
        assert found, block
        h1, m1, s1, ms1, h2, m2, s2, ms2, text = found.groups()
        cues.append((int(h1) * 3600 + int(m1) * 60 + int(s1) + int(ms1) / 1000,
                     int(h2) * 3600 + int(m2) * 60 + int(s2) + int(ms2) / 1000, text))
    return cues


def spoken_seconds(client, text: str, voice: str) -> float:
    """How long `voice` takes to say `text` alone (the streaming endpoint, decoded)."""
    answer = client.get("/api/tts-generate-streaming",
                        params={"text": text, "voice": voice, "language": "en", "output_file": "reference"})
    assert answer.status_code == 200, answer.text
    return decode_audio(answer.content).duration_s


def quiet_at(samples: np.ndarray, rate: int, start_s: float, end_s: float) -> bool:
    """No speech between the two times: a 10 ms loudness envelope under a tenth of the loudest."""
    window = int(0.01 * rate)
    envelope = np.sqrt(np.convolve(samples ** 2, np.ones(window) / window, "same"))
    part = envelope[max(int(start_s * rate), 0):int(end_s * rate)]
    return bool(part.size) and float(part.max()) < 0.1 * float(envelope.max())


@pytest.mark.parametrize("response_format, upload", [("mp3", False), ("m4a", True)])
def test_a_narrated_two_voice_job_gives_audio_and_captions_that_fit_it(server, response_format, upload):
    client = server.client
    fields = {"response_format": response_format, "narrator_enabled": "true", "language": "en",
              "character_voice_gen": SECOND_VOICE, "narrator_voice_gen": BUNDLED_VOICE, "text_not_inside": "narrator"}
    if upload:  # the text as a .txt file, the settings as form fields
        answer = client.post("/api/jobs", data=fields, files={"file": ("story.txt", STORY.encode(), "text/plain")})
    else:
        answer = client.post("/api/jobs", json={"text": STORY, **fields})
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["state"] in ("queued", "running") and answer.headers["location"] == f"/api/jobs/{job['id']}"
    assert job["characters"] == len(STORY)

    done = wait_for_job(client, job["id"])
    assert done["state"] == "done", done
    assert done["segments_total"] == done["segments_done"] == len(SENTENCES)
    assert job["id"] in [j["id"] for j in client.get("/api/jobs").json()["jobs"]]

    audio = client.get(done["urls"]["audio"])
    assert audio.status_code == 200
    assert audio.headers["content-type"] == {"mp3": "audio/mpeg", "m4a": "audio/mp4"}[response_format]
    samples, rate = pcm_of(audio.content)
    assert rate == 22050
    duration = len(samples) / rate
    # An AAC file starts with one frame of encoder priming and pads its last frame (up to 2 x 1024
    # samples, 93 ms at this rate; PyAV writes no edit list that would hide them); mp3 about 10 ms.
    assert -0.01 < duration - done["audio_seconds"] < 0.1

    cues = parse_cues(client.get(done["urls"]["captions_srt"]).text)
    assert [c[2] for c in cues] == SENTENCES and cues[0][0] == 0
    assert all(a[1] == b[0] for a, b in zip(cues, cues[1:])), "cues follow each other without gaps"
    assert cues[-1][1] == pytest.approx(done["audio_seconds"], abs=0.001)
    # Which voice spoke each sentence: its length in the job is nearer to that voice saying it
    # alone than to the other voice saying it (the character's voice is twice as slow).
    for index, (start, end, sentence) in enumerate(cues):
        expected, other = (SECOND_VOICE, BUNDLED_VOICE) if index in QUOTED else (BUNDLED_VOICE, SECOND_VOICE)
        length = end - start
        assert abs(length - spoken_seconds(client, sentence, expected)) < \
            abs(length - spoken_seconds(client, sentence, other)), f"{sentence!r} was not spoken by {expected}"
    priming = 1024 / rate if response_format == "m4a" else 0.0  # an AAC file's audio starts one frame late
    for _start, boundary, _text in cues[:-1]:
        # These sentences end in at least 0.17 s of silence and start after at least 0.04 s (both
        # voices, measured): a boundary 50 ms late would put the next sentence's first sound in here.
        at = boundary + priming
        assert quiet_at(samples, rate, at - 0.10, at + 0.025), f"speech at the boundary {boundary}"
    vtt = client.get(done["urls"]["captions_vtt"])
    assert vtt.headers["content-type"].startswith("text/vtt") and vtt.text.startswith("WEBVTT\n\n")
    assert vtt.text.count(" --> ") == len(SENTENCES)

    assert client.delete(f"/api/jobs/{job['id']}").status_code == 200  # a finished job is removed
    assert client.get(f"/api/jobs/{job['id']}").status_code == 404
    assert not (server.outputs / "jobs" / job["id"]).exists()


def test_cancelling_a_running_job_stops_it_and_leaves_no_file(server):
    client = server.client
    text = " ".join(f"This is sentence number {i} of a long story." for i in range(60))
    job = client.post("/api/jobs", json={"text": text, "language": "en"}).json()
    running = wait_for_job(client, job["id"], states=("running", *FINISHED))
    assert running["state"] == "running", running
    deadline = time.monotonic() + 60
    while client.get(f"/api/jobs/{job['id']}").json()["segments_done"] < 1 and time.monotonic() < deadline:
        time.sleep(0.1)

    progress = client.get(f"/api/jobs/{job['id']}").json()
    assert progress["state"] == "running", progress
    # eta_seconds: what is left, at the rate so far (null until a line is done)
    left = (progress["segments_total"] - progress["segments_done"]) / progress["segments_total"]
    assert progress["characters_per_second"] > 0, progress
    # The sentences are of about one length (one or two digits in each).
    assert progress["eta_seconds"] == pytest.approx(
        left * len(text) / progress["characters_per_second"], rel=0.1, abs=0.2), progress
    cancelled = client.delete(f"/api/jobs/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    folder = server.outputs / "jobs" / job["id"]
    wait_for_release(folder)  # the runner has stopped: none of its lines may be left or come later
    assert client.get(f"/api/jobs/{job['id']}").json()["state"] == "cancelled"
    assert sorted(p.name for p in folder.iterdir() if p.suffix in (".wav", ".mp3")) == []
    assert client.get(f"/api/jobs/{job['id']}/audio").status_code == 409
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 200  # then removed


def test_a_client_may_have_so_many_unfinished_jobs(server):
    client = server.client
    text = " ".join(f"Sentence {i} of a job that takes a while." for i in range(40))
    ids = []
    try:
        for _ in range(4):
            answer = client.post("/api/jobs", json={"text": text})
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        before = sorted(p.name for p in (server.outputs / "jobs").iterdir())
        refused = client.post("/api/jobs", json={"text": text})
        assert refused.status_code == 429 and refused.headers["retry-after"]
        assert "at most 4 unfinished jobs" in refused.json()["detail"]
        assert sorted(p.name for p in (server.outputs / "jobs").iterdir()) == before
    finally:
        for job_id in ids:
            client.delete(f"/api/jobs/{job_id}")


@pytest.mark.parametrize("send, status, says", [
    (lambda c: c.post("/api/jobs", content=b"{not json", headers={"content-type": "application/json"}), 400,
     "not JSON"),
    (lambda c: c.post("/api/jobs", json=["a list"]), 400, "JSON object"),
    (lambda c: c.post("/api/jobs", content=b"text=hello", headers={"content-type": "text/plain"}), 415,
     "application/json"),
    (lambda c: c.post("/api/jobs", json={"response_format": "mp3"}), 422, "text"),
    (lambda c: c.post("/api/jobs", json={"text": ""}), 400, "text: must not be empty"),
    (lambda c: c.post("/api/jobs", json={"text": " \n\t "}), 400, "text: must not be empty"),
    (lambda c: c.post("/api/jobs", files={"file": ("t.txt", b"\xef\xbb\xbf \r\n", "text/plain")}), 400,
     "text: must not be empty"),
    (lambda c: c.post("/api/jobs", json={"text": "Hello there.", "response_format": "exe"}), 400, "response_format"),
    (lambda c: c.post("/api/jobs", json={"text": "Hello there.", "character_voice_gen": "../../confignew.json"}), 400,
     "character_voice_gen"),
    (lambda c: c.post("/api/jobs", json={"text": "Hello there.", "character_voice_gen": "nobody.onnx"}), 400,
     "nobody.onnx"),
    (lambda c: c.post("/api/jobs", json={"text": "Hello there.", "speed": 9}), 400, "speed"),
    (lambda c: c.post("/api/jobs", json={"text": "Hello there.", "engine": "nosuch"}), 400, "nosuch"),
    (lambda c: c.post("/api/jobs", json={"text": "x" * 1_000_001}), 400, "at most 1000000 characters"),
    (lambda c: c.post("/api/jobs", files={"file": ("t.txt", b"\xff\xfe\xfa not utf-8", "text/plain")}), 400,
     "UTF-8"),
    (lambda c: c.get("/api/jobs/..%2F..%2Fconfignew.json"), 404, None),
    (lambda c: c.get("/api/jobs/0123456789abcdef0123456789abcdef/audio"), 404, "no job"),
    (lambda c: c.get("/api/jobs/0123456789abcdef0123456789abcdef/captions.txt"), 404, None),
    (lambda c: c.delete("/api/jobs/0123456789abcdef0123456789abcdef"), 404, "no job"),
])
def test_a_bad_job_request_is_refused_clearly_and_changes_nothing(server, send, status, says):
    jobs = server.outputs / "jobs"
    before = sorted(p.name for p in jobs.iterdir()) if jobs.is_dir() else []
    answer = send(server.client)
    assert answer.status_code == status, answer.text
    if says:
        assert says in answer.text
    assert (sorted(p.name for p in jobs.iterdir()) if jobs.is_dir() else []) == before


def test_the_job_api_is_in_the_openapi_document(server):
    paths = server.client.get("/openapi.json").json()["paths"]
    submit = paths["/api/jobs"]["post"]
    assert set(submit["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert "202" in submit["responses"]
    assert {"/api/jobs/{job_id}", "/api/jobs/{job_id}/audio", "/api/jobs/{job_id}/captions.{kind}"} <= set(paths)
    assert "delete" in paths["/api/jobs/{job_id}"]


@pytest.mark.parametrize("response_format", ["m4a", "mp3", "ogg", "opus"])
def test_headings_of_the_text_become_chapters_of_the_audio(server, response_format):
    """Chapters as players read them (FFmpeg: MP4 chapters, ID3 CHAP frames, Ogg CHAPTERxxx comments)."""
    client = server.client
    text = ("Chapter One\n\nThe keeper climbed the stairs. He lit the lamp.\n\n"
            "Chapter Two: The Storm\n\nThe wind rose in the night. By morning it was calm.")
    job = client.post("/api/jobs", json={"text": text, "language": "en", "response_format": response_format}).json()
    done = wait_for_job(client, job["id"])
    assert done["state"] == "done", done
    cues = parse_cues(client.get(done["urls"]["captions_srt"]).text)
    assert [c[2] for c in cues] == ["Chapter One", "The keeper climbed the stairs.", "He lit the lamp.",
                                    "Chapter Two: The Storm", "The wind rose in the night.", "By morning it was calm."]
    with av.open(io.BytesIO(client.get(done["urls"]["audio"]).content)) as container:
        chapters = [(float(c["start"] * c["time_base"]), float(c["end"] * c["time_base"]), c["metadata"]["title"])
                    for c in container.chapters()]
    assert [title for _start, _end, title in chapters] == ["Chapter One", "Chapter Two: The Storm"]
    assert chapters[0][0] == 0 and chapters[1][0] == pytest.approx(cues[3][0], abs=0.002)
    if response_format in ("m4a", "mp3"):  # Ogg keeps start times only: a player ends a chapter at the next
        assert chapters[0][1] == pytest.approx(cues[3][0], abs=0.002)
        assert chapters[1][1] == pytest.approx(cues[-1][1], abs=0.002)
    client.delete(f"/api/jobs/{job['id']}")


def test_without_keys_a_job_belongs_to_its_address(asgi_server):
    """Without API keys a client is its address: another address gets 404 for the job."""
    from fastapi.testclient import TestClient

    job = asgi_server.client.post("/api/jobs", json={"text": "A job of one address.", "language": "en"}).json()
    other = TestClient(asgi_server.client.app, client=("10.0.0.2", 50000))
    try:
        for path in ("", "/audio", "/captions.vtt"):  # (a cancel by another key: tests/contract/test_access.py)
            assert other.get(f"/api/jobs/{job['id']}{path}").status_code == 404, path
        assert job["id"] not in [j["id"] for j in other.get("/api/jobs").json()["jobs"]]
        assert asgi_server.client.get(f"/api/jobs/{job['id']}").status_code == 200
    finally:
        assert asgi_server.client.delete(f"/api/jobs/{job['id']}").status_code == 200

"""A job outlives its server: a real `alltalk-serve run` process is killed (SIGKILL, every process
of it) in the middle of a job; started again on the same root, it resumes the job where it
stopped, keeps the lines finished before the kill as they were, and the audio is the audio of a
run without the kill (a voice without random variation, so that the two can be compared)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import threading
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from tests.conftest import PROJECT_DIR, SERVE_PORT
from tests.contract.test_jobs import parse_cues, wait_for_job
from tests.serve.test_cli import CLI
from tests.support import install_piper_voice

pytestmark = pytest.mark.serve

VOICE = "steady/en_US-joe-steady.onnx"
TEXT = " ".join(f"Here is sentence number {i} of the story, told slowly." for i in range(1, 41))


class ServerProcess:
    """`alltalk-serve run` with Piper alone, as a service manager starts it; `config` in place of
    serve_config.yaml."""

    def __init__(self, root: Path, port: int, config: Path | None = None, env: dict[str, str] | None = None):
        self.url = f"http://127.0.0.1:{port}"
        command = [*CLI, "run", "--root", str(root), "--port", str(port), "--engines", "piper", "--rvc", "off"]
        self.process = subprocess.Popen([*command, *(["--config", str(config)] if config else [])],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        cwd=PROJECT_DIR, start_new_session=True, env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")), daemon=True).start()
        deadline = time.monotonic() + 240
        while not any("ready: http://" in line for line in self.lines):
            assert time.monotonic() < deadline and self.process.poll() is None, "".join(self.lines[-30:])
            time.sleep(0.2)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def kill(self) -> None:
        """SIGKILL to the server and every process it started: nothing gets to clean up."""
        processes = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
        for proc in processes:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(processes, timeout=30)
        self.client.close()

    def stop(self) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # a service manager's stop
            try:
                return self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode


def pcm_and_rate(wav_bytes: bytes) -> tuple[bytes, int]:
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        return wav.readframes(wav.getnframes()), wav.getframerate()


def test_a_job_killed_with_its_server_resumes_where_it_stopped(tmp_path):
    install_piper_voice(tmp_path / "models" / "piper", VOICE, slower=1.0, steady=True)
    job_request = {"text": TEXT, "character_voice_gen": VOICE, "language": "en", "response_format": "wav"}
    server = ServerProcess(tmp_path, SERVE_PORT + 13)
    try:
        job = server.client.post("/api/jobs", json=job_request).json()
        deadline = time.monotonic() + 120
        while (done := server.client.get(f"/api/jobs/{job['id']}").json()["segments_done"]) < 8:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        folder = tmp_path / "outputs" / "jobs" / job["id"]
        server.kill()
    except BaseException:
        server.kill()
        raise
    before_kill = {int(p.stem.split("-")[1]): p.read_bytes() for p in folder.glob("line-*.wav")}
    assert len(before_kill) >= done and len(before_kill) < 40, "killed in the middle"

    server = ServerProcess(tmp_path, SERVE_PORT + 13)
    try:
        resumed = wait_for_job(server.client, job["id"], timeout_s=240)
        assert resumed["state"] == "done", resumed["error"]
        assert resumed["segments_total"] == resumed["segments_done"] == 40
        audio = server.client.get(resumed["urls"]["audio"]).content
        cues = parse_cues(server.client.get(resumed["urls"]["captions_srt"]).text)

        # Lines finished before the kill were kept as they were, and sit where their cue says
        # (the captions give milliseconds).
        pcm, rate = pcm_and_rate(audio)
        for index, line_file in before_kill.items():
            line_pcm, line_rate = pcm_and_rate(line_file)
            assert line_rate == rate
            at = pcm.find(line_pcm)
            assert at >= 0 and at % 2 == 0, f"line {index} is not in the audio as it was"
            assert abs(at / 2 / rate - cues[index][0]) <= 0.001, f"line {index} is out of place"

        # The same job without a kill: the same audio, in length and in the order of its sentences.
        again = server.client.post("/api/jobs", json=job_request).json()
        unbroken = wait_for_job(server.client, again["id"], timeout_s=240)
        assert unbroken["state"] == "done", unbroken
        unbroken_cues = parse_cues(server.client.get(unbroken["urls"]["captions_srt"]).text)
        assert [c[2] for c in cues] == [c[2] for c in unbroken_cues] == [
            f"Here is sentence number {i} of the story, told slowly." for i in range(1, 41)]
        assert [round(end - start, 3) for start, end, _ in cues] == \
               [round(end - start, 3) for start, end, _ in unbroken_cues]
        unbroken_pcm, _rate = pcm_and_rate(server.client.get(unbroken["urls"]["audio"]).content)
        assert len(pcm) == len(unbroken_pcm)
        resumed_samples = np.frombuffer(pcm, np.int16).astype(np.int32)
        unbroken_samples = np.frombuffer(unbroken_pcm, np.int16).astype(np.int32)
        # Equal sample for sample here (measured); a step of 2 allows for onnxruntime's threads.
        assert np.abs(resumed_samples - unbroken_samples).max() <= 2, "the resumed job's audio is the unbroken one's"
        assert not list(folder.glob("line-*.wav")), "the lines are removed once the audio is written"
    finally:
        code = server.stop()
    assert code == 0

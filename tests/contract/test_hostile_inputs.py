"""Hostile input, table-driven: traversal in every name field, oversized text and bodies, binary
garbage, wrong content types, malformed JSON, unicode edge cases. Each is a 4xx with a JSON body,
and nothing appears on the server outside outputs/."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from tests.conftest import BUNDLED_VOICE

TRAVERSALS = ["../../../etc/passwd", "/etc/passwd", "..\\..\\confignew.json", "voice\x00.onnx", "C:\\Windows\\x.onnx"]
GOOD_FORM = {"text_input": "Hello there.", "character_voice_gen": BUNDLED_VOICE, "narrator_enabled": "false",
             "language": "en", "output_file_name": "hostile", "output_file_timestamp": "true"}


@dataclass
class Case:
    name: str
    method: str
    path: str
    params: dict = field(default_factory=dict)
    data: dict | None = None
    content: bytes | None = None
    json_body: object = None
    headers: dict = field(default_factory=dict)
    contract_status: int | None = None
    """Where the contract answers a refusal with another status (200 + "status": "error")."""


def _cases() -> list[Case]:
    cases = []
    for i, bad in enumerate(TRAVERSALS):
        for name in ("character_voice_gen", "narrator_voice_gen", "rvccharacter_voice_gen", "rvcnarrator_voice_gen",
                     "output_file_name"):
            form = {**GOOD_FORM, name: bad}
            if name.startswith("narrator"):
                form["narrator_enabled"] = "true"
            cases.append(Case(f"generate {name} {i}", "POST", "/api/tts-generate", data=form))
        cases += [
            Case(f"stream voice {i}", "GET", "/api/tts-generate-streaming",
                 params={"text": "Hi.", "voice": bad, "language": "en", "output_file": "x"}),
            Case(f"stream output_file {i}", "POST", "/api/tts-generate-streaming",
                 data={"text": "Hi.", "voice": BUNDLED_VOICE, "language": "en", "output_file": bad}),
            Case(f"preview voice {i}", "POST", "/api/previewvoice/", data={"voice": bad}),
            Case(f"preview rvc {i}", "POST", "/api/previewvoice/", data={"voice": BUNDLED_VOICE,
                                                                         "rvccharacter_voice_gen": bad}),
            Case(f"openai voice {i}", "POST", "/v1/audio/speech", json_body={"model": "tts-1", "input": "Hi.",
                                                                             "voice": bad}),
            Case(f"voice2rvc input {i}", "POST", "/api/voice2rvc", data={"input_tts_path": bad,
                                                                       "output_rvc_path": "x.wav",
                                                                       "pth_name": "Disabled"}),
            Case(f"reload model {i}", "POST", "/api/reload", params={"tts_method": bad}, contract_status=200),
            Case(f"engine reload {i}", "POST", "/api/enginereload", params={"engine": bad}, contract_status=200),
        ]
    cases += [
        Case("audio traversal", "GET", "/audio/..%2F..%2Fconfignew.json"),
        Case("audio name longer than a file system takes", "GET", "/audio/" + "x" * 300 + ".wav"),
        Case("voice name longer than a file system takes", "POST", "/api/tts-generate",
             data={"text_input": "Hi.", "character_voice_gen": "v" * 300 + ".onnx"}),
        Case("text over the limit", "POST", "/api/tts-generate", data={**GOOD_FORM, "text_input": "word " * 20_000}),
        Case("stream text over the limit", "GET", "/api/tts-generate-streaming",
             params={"text": "word " * 1_000, "voice": BUNDLED_VOICE, "language": "en", "output_file": "x"}),
        Case("openai input over the limit", "POST", "/v1/audio/speech",
             json_body={"model": "tts-1", "input": "x" * 5000, "voice": "alloy"}),
        Case("binary garbage as a form", "POST", "/api/tts-generate", content=bytes(range(256)) * 40,
             headers={"Content-Type": "application/x-www-form-urlencoded"}),
        Case("binary garbage as multipart", "POST", "/api/tts-generate", content=b"\xff\xfe garbage \x00" * 100,
             headers={"Content-Type": "multipart/form-data; boundary=zzz"}),
        Case("json to a form endpoint", "POST", "/api/tts-generate", content=json.dumps(GOOD_FORM).encode(),
             headers={"Content-Type": "application/json"}),
        Case("form to the openai endpoint", "POST", "/v1/audio/speech", data={"model": "tts-1", "input": "Hi."}),
        Case("malformed json", "POST", "/v1/audio/speech", content=b'{"model": "tts-1", "input": ',
             headers={"Content-Type": "application/json"}),
        Case("json array to the openai endpoint", "POST", "/v1/audio/speech", json_body=["not", "an", "object"]),
        Case("invalid utf-8 in a form", "POST", "/api/tts-generate",
             content=b"text_input=%ff%fe%fd&character_voice_gen=" + BUNDLED_VOICE.encode(),
             headers={"Content-Type": "application/x-www-form-urlencoded"}),
        Case("only invisible characters", "POST", "/api/tts-generate",
             data={**GOOD_FORM, "text_input": "\u200b\u200d\u202e\ufeff"}),
        Case("lone surrogate in json", "POST", "/v1/audio/speech",
             content=b'{"model": "tts-1", "input": "\\ud800", "voice": "alloy"}',
             headers={"Content-Type": "application/json"}),
        Case("bad speed", "POST", "/v1/audio/speech", json_body={"model": "tts-1", "input": "Hi.", "voice": "alloy",
                                                                 "speed": "fast"}),
        Case("10 MB body", "POST", "/api/tts-generate", content=b"text_input=" + b"a" * 10_000_000,
             headers={"Content-Type": "application/x-www-form-urlencoded"}),
        Case("huge save-tts-data", "POST", "/api/save-tts-data", content=b"[" + b'{"a": 1},' * 1_000_000 + b"{}]",
             headers={"Content-Type": "application/json"}),
        Case("nested json", "POST", "/api/save-tts-data", content=b"[" * 100_000 + b"]" * 100_000,
             headers={"Content-Type": "application/json"}),
    ]
    return cases


CASES = _cases()


def _files_outside_outputs(root):
    return {p for p in root.rglob("*") if p.is_file() and "outputs" not in p.relative_to(root).parts}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_gets_a_4xx_in_json_and_changes_nothing(server, case):
    before = _files_outside_outputs(server.root)
    answer = server.client.request(case.method, case.path, params=case.params, data=case.data, content=case.content,
                                   json=case.json_body, headers=case.headers)
    assert answer.headers["content-type"].startswith("application/json")
    if case.contract_status is not None:
        assert (answer.status_code, answer.json()["status"]) == (case.contract_status, "error")
    else:
        assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
        assert isinstance(answer.json(), dict)
    assert _files_outside_outputs(server.root) == before
    assert server.client.get("/api/ready").text == "Ready"

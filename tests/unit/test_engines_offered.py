"""An install offers the engines it can run: without the coqui extra, `/api/currentsettings` lists
Piper only (as AllTalk lists installed engines), and `/api/enginereload` for VITS or XTTS answers at
once with the command that installs it, instead of failing after seconds of deploying."""

from __future__ import annotations

import importlib.util
import time

import pytest
from fastapi.testclient import TestClient

import serve_app
from engines.base import EngineOptions
from engines.piper import PiperEngine
from engines.registry import installed_engines
from speechcore.api import create_app
from speechcore.config.paths import ServerPaths
from speechcore.config.store import SettingsStore
from speechcore.service import SpeechService
from tests.support import InProcessEngineClient


@pytest.fixture
def without_coqui(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "TTS" else real(name, *a))


def test_without_the_coqui_extra_only_piper_is_offered(without_coqui):
    assert installed_engines() == ["piper"]
    assert serve_app.offered_engines(["piper"]) == (["piper"], {"vits": "coqui", "xtts": "coqui"})
    # An engine the deployment runs is offered wherever the ingress is built (a CPU head of a cluster
    # whose GPU workers have the extra).
    assert serve_app.offered_engines(["piper", "xtts"]) == (["piper", "xtts"], {"vits": "coqui"})


def test_with_the_coqui_extra_every_engine_is_offered():
    pytest.importorskip("TTS")
    assert serve_app.offered_engines(["piper"]) == (["piper", "vits", "xtts"], {})


def test_the_api_lists_what_is_installed_and_names_the_extra_that_is_not(tmp_path, without_coqui):
    supported, not_installed = serve_app.offered_engines(["piper"])
    paths = ServerPaths.at(tmp_path)
    engines = {"piper": InProcessEngineClient(PiperEngine.create(paths, EngineOptions()))}
    service = SpeechService(SettingsStore(paths), engines, supported, "piper", engines_not_installed=not_installed)
    with TestClient(create_app(service)) as client:
        assert client.get("/api/currentsettings").json()["engines_available"] == ["piper"]
        started = time.monotonic()
        answer = client.post("/api/enginereload", params={"engine": "vits"})
        assert time.monotonic() - started < 1
        assert answer.status_code == 200 and answer.json()["status"] == "error"
        assert "ALLTALK_EXTRAS=coqui scripts/run-server" in answer.json()["message"]
        assert client.post("/api/enginereload", params={"engine": "nope"}).json()["status"] == "error"

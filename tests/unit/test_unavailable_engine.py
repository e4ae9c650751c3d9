"""What clients see while the default engine has no replica that can serve."""

import pytest
from fastapi.testclient import TestClient

from speechcore.api import create_app
from speechcore.config.paths import ServerPaths
from speechcore.config.store import SettingsStore
from speechcore.engine_client import EngineUnavailable
from speechcore.service import SpeechService


class NoReplicaClient:
    async def describe(self):
        raise EngineUnavailable("engine application 'piper' has no replica answering yet")

    async def is_serving(self):
        return False

    async def synthesize(self, request):
        raise EngineUnavailable("no replica")
        yield  # pragma: no cover

    async def select_model(self, model):
        raise EngineUnavailable("no replica")


@pytest.fixture
def client(tmp_path):
    service = SpeechService(SettingsStore(ServerPaths.at(tmp_path)), {"piper": NoReplicaClient()}, ["piper"], "piper")
    with TestClient(create_app(service)) as client:
        yield client


def test_ready_says_unloaded(client):
    response = client.get("/api/ready")
    assert (response.status_code, response.text) == (200, "Unloaded")


@pytest.mark.parametrize("path", ["/api/voices", "/api/currentsettings"])
def test_status_calls_are_503_with_retry_after(client, path):
    response = client.get(path)
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["status"] == "error"


def test_generation_is_503_and_writes_nothing(client, tmp_path):
    response = client.post("/api/tts-generate", data={"text_input": "Hello"})
    assert response.status_code == 503
    assert not (tmp_path / "outputs").exists()

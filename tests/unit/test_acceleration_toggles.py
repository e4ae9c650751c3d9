"""DeepSpeed and LowVRAM switches (§3.5, §3.6) on an engine whose replicas have CUDA and
DeepSpeed. The GPU work itself cannot run on this machine: the fake engine stands in for a
replica and records what the server asked of it. On a real GPU replica, configure() reloads XTTS
with DeepSpeed, or keeps the model in RAM between requests (ModelSlot, tested below)."""

import json

import pytest
import torch
from fastapi.testclient import TestClient

from engines.coqui_common import ModelFolders, ModelSlot
from speechcore.api import create_app
from speechcore.config.paths import ServerPaths
from speechcore.config.store import SettingsStore
from speechcore.engine_types import EngineCapabilities
from speechcore.service import SpeechService
from tests.support import InProcessEngineClient, ToneEngine


class GpuToneEngine(ToneEngine):
    def __init__(self):
        super().__init__()
        self.deepspeed = self.lowvram = False
        self.configured = []

    def info(self):
        info = super().info()
        caps = EngineCapabilities(streaming=True, deepspeed=True, deepspeed_available=True, lowvram=True, cuda=True)
        return type(info)(**{**info.__dict__, "capabilities": caps, "deepspeed_enabled": self.deepspeed,
                             "lowvram_enabled": self.lowvram})

    def configure(self, deepspeed, lowvram):
        self.configured.append((deepspeed, lowvram))
        self.deepspeed, self.lowvram = deepspeed, lowvram


@pytest.fixture
def setup(tmp_path):
    engine = GpuToneEngine()
    service = SpeechService(SettingsStore(ServerPaths.at(tmp_path)), {"piper": InProcessEngineClient(engine)},
                            ["piper"], "piper")
    with TestClient(create_app(service)) as client:
        yield client, engine, tmp_path


def test_deepspeed_switches_on_the_replicas_and_is_saved(setup):
    client, engine, root = setup
    assert client.post("/api/deepspeed", params={"new_deepspeed_value": "True"}).json() == {
        "status": "deepspeed-success"
    }
    assert engine.configured == [(True, False)]
    assert client.get("/api/currentsettings").json()["deepspeed_enabled"] is True
    saved = json.loads((root / "system/tts_engines/piper/model_settings.json").read_text())
    assert saved["settings"]["deepspeed_enabled"] is True
    again = client.post("/api/deepspeed", params={"new_deepspeed_value": "true"}).json()
    assert again["status"] == "success" and "already enabled" in again["message"]


def test_lowvram_switches_on_gpu_replicas(setup):
    client, engine, _ = setup
    assert client.post("/api/lowvramsetting", params={"new_low_vram_value": "True"}).json() == {
        "status": "lowvram-success",
        "message": "",
    }
    assert engine.configured == [(False, True)]
    assert client.get("/api/currentsettings").json()["lowvram_enabled"] is True


class FakeModel:
    def __init__(self, name, device):
        self.name, self.loaded_on, self.moves = name, device.type, []


def test_lowvram_keeps_the_model_in_ram_between_overlapping_requests(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    gpu = torch.device("cuda")
    slot = ModelSlot(
        ModelFolders(tmp_path, "x", ("config.json",)),
        lambda name, folder, device: FakeModel(name, device),
        "X",
        move=lambda model, device: model.moves.append(device.type),
        device=gpu,
    )
    slot.set_lowvram(True)
    slot.select("x - m")
    model = slot.current()
    assert model.loaded_on == "cpu" and model.moves == [], "loaded into RAM, where it waits"
    first, second = slot.use(), slot.use()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert model.moves == ["cuda"], "on the GPU while a request still uses it"
    second.__exit__(None, None, None)
    assert model.moves == ["cuda", "cpu"]
    slot.set_lowvram(False)
    assert model.moves[-1] == "cuda", "LowVRAM off: the model lives on the GPU again"
    with slot.use():
        pass
    assert model.moves == ["cuda", "cpu", "cuda"]

"""§3 control endpoints."""

import json

import pytest


def test_reload_with_the_piper_model_succeeds(server):
    response = server.client.post("/api/reload", params={"tts_method": "piper"})
    assert response.status_code == 200
    assert response.json() == {"status": "model-success"}
    assert server.client.get("/api/currentsettings").json()["current_model_loaded"] == "piper"


@pytest.mark.parametrize("params", [{"tts_method": "xtts - xttsv2_2.0.3"}, {}])
def test_reload_with_an_unknown_or_missing_model_is_a_json_error(server, params):
    response = server.client.post("/api/reload", params=params)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "error" and "Invalid TTS method" in body["message"]


def test_reload_is_post_only(server):
    assert server.client.get("/api/reload", params={"tts_method": "piper"}).status_code == 405


def test_enginereload_with_an_unknown_engine_is_a_json_error(server):
    body = server.client.post("/api/enginereload", params={"engine": "parler"}).json()
    assert body["status"] == "error" and "parler" in body["message"]


def test_enginereload_to_a_live_engine_succeeds_and_is_saved(server):
    response = server.client.post("/api/enginereload", params={"engine": "piper"})
    assert response.json() == {"status": "engine-success"}
    saved = json.loads((server.root / "system" / "tts_engines" / "tts_engines.json").read_text())
    assert (saved["engine_loaded"], saved["selected_model"]) == ("piper", "piper")
    assert server.client.get("/api/ready").text == "Ready"


def test_stop_generation_is_a_put_answering_a_message(server):
    response = server.client.put("/api/stop-generation")
    assert response.status_code == 200
    assert "Cancelling" in response.json()["message"]
    assert server.client.get("/api/stop-generation").status_code == 405


def test_reload_config_rereads_the_settings_file(server):
    server.write_config({"api_def": {"api_output_file_name": "renamed"}})
    response = server.client.get("/api/reload_config")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "reloaded" in response.text
    generated = server.client.post("/api/tts-generate", data={"text_input": "Renamed output."}).json()
    assert generated["output_file_url"].startswith("/audio/renamed_")


def test_reload_config_with_a_malformed_file_is_a_400_and_keeps_the_old_settings(server):
    server.write_config({"api_def": {"api_language": "de"}})
    (server.root / "confignew.json").write_text("{broken")
    response = server.client.get("/api/reload_config")
    assert response.status_code == 400
    assert response.json()["status"] == "error" and "confignew.json" in response.json()["message"]
    assert server.client.get("/settings-json").json()["api_def"]["api_language"] == "de"


@pytest.mark.parametrize("path,param", [("/api/deepspeed", "new_deepspeed_value"),
                                        ("/api/lowvramsetting", "new_low_vram_value")])
@pytest.mark.parametrize("value", ["True", "False", "true", "false"])
def test_piper_is_not_capable_of_deepspeed_or_lowvram(server, path, param, value):
    response = server.client.post(path, params={param: value})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "error" and "piper" in body["message"]


@pytest.mark.parametrize("path,params", [("/api/deepspeed", {}), ("/api/deepspeed", {"new_deepspeed_value": "maybe"}),
                                         ("/api/lowvramsetting", {}),
                                         ("/api/lowvramsetting", {"new_low_vram_value": "2"})])
def test_deepspeed_and_lowvram_need_a_boolean(server, path, params):
    response = server.client.post(path, params=params)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


def test_stop_generation_cancels_a_generation_in_flight_and_no_file_is_left(server):
    import re
    import threading
    import time

    before = set(server.outputs.iterdir()) if server.outputs.exists() else set()
    long_text = " ".join(["This is one of many sentences that make a long generation."] * 30)
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        response=server.client.post("/api/tts-generate", data={"text_input": long_text})))
    worker.start()
    stopped = 0
    deadline = time.monotonic() + 30
    while worker.is_alive() and not stopped and time.monotonic() < deadline:
        message = server.client.put("/api/stop-generation").json()["message"]
        stopped = int(re.search(r"\((\d+) in progress\)", message).group(1))
        time.sleep(0.05)
    worker.join(60)
    assert stopped == 1
    response = result["response"]
    assert response.status_code == 409
    assert response.json()["status"] == "generate-failure"
    after = set(server.outputs.iterdir()) if server.outputs.exists() else set()
    assert after == before

"""The operator's path, as the README's "Running on a cluster" gives it: a Ray head started with
token auth (`ray start --head --block`, as KubeRay runs it), `serve deploy` of serve_config.yaml
with the server root set (made concrete for this CPU-only machine the way the embedded server does
it: Piper only, no GPU shares), the API answering over HTTP, a rolling reload, `serve status`,
`serve shutdown`, and the head stopped. Every process this test started ends with it.

The head runs in its own temp folder with its own ports, beside the test session's local Ray, and
behind the test session's HTTP front (its variables set on `ray start`, as an operator sets them on
every node)."""

from __future__ import annotations

import re
import secrets

import httpx
import pytest
import yaml

import embedded_config
from tests.conftest import PROJECT_DIR
from tests.ray_head import ray_head

pytestmark = [pytest.mark.serve, pytest.mark.both_fronts]


def test_a_token_auth_head_serve_deploy_the_api_a_rolling_reload_and_a_clean_stop(tmp_path):
    # The README's command names the auth mode: the `serve` client refuses a token-auth head
    # without RAY_AUTH_MODE=token, even with the token at hand.
    command = _readme_deploy_command()
    assert "RAY_AUTH_MODE=token" in command, command

    with ray_head(auth_token=secrets.token_hex(16)) as head:
        # serve_config.yaml with the server root set, made concrete for a machine without GPUs.
        raw = yaml.safe_load((PROJECT_DIR / "serve_config.yaml").read_text())
        config = embedded_config.prepare_config(raw, tmp_path, "127.0.0.1", head.http_port, 0, ["piper"], rvc=False)
        head.deploy(config, tmp_path / "serve_config.yaml")
        url = head.wait_until_ready()

        generated = httpx.post(f"{url}/api/tts-generate", timeout=60, data={"text_input": "Deployed by an operator."})
        assert generated.status_code == 200 and generated.json()["status"] == "generate-success"
        assert httpx.get(f"{url}{generated.json()['output_file_url']}").status_code == 200
        assert (tmp_path / "outputs").is_dir()
        reload = httpx.post(f"{url}/api/reload", params={"tts_method": "piper"}, timeout=300)
        assert reload.json() == {"status": "model-success"}
        applications = httpx.get(f"{url}/api/deployments").json()["applications"]
        assert {a["name"]: a["status"] for a in applications} == {"alltalk": "RUNNING", "piper": "RUNNING"}

        status = head.serve("status", timeout_s=60)
        assert status.returncode == 0 and re.search(r"piper:\s+status: RUNNING", status.stdout), status.stdout
        shutdown = head.serve("shutdown", "-y")
        assert shutdown.returncode == 0, shutdown.stdout + shutdown.stderr


def _readme_deploy_command() -> str:
    readme = (PROJECT_DIR / "README.md").read_text()
    return next(line.strip().strip("`") for line in readme.splitlines() if "serve deploy serve_config.yaml" in line
                and "RAY_AUTH_TOKEN" in line)

"""GPU shares scheduled by real Serve on a node that declares GPUs it does not have (`ray start
--num-gpus 2`): Ray schedules by the declared GPUs and sets each replica's CUDA_VISIBLE_DEVICES, so
placement shows here without a GPU. The shipped shares (XTTS 0.5, VITS 0.25, RVC 0.25) place as Ray promises,
each replica reports the share and GPU it was given, and with the shipped `device: auto` a replica
that sees no CUDA device speaks on the CPU and says so in `/api/deployments` and
`alltalk-serve status`. On a machine with GPUs the same replicas would report `cuda`, no warning.
With a CPU head and a worker node that declares the GPUs, the GPU engines go to the worker."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import httpx
import pytest
import yaml

import embedded_config
from tests.conftest import PROJECT_DIR, RVC, make_coqui_root
from tests.ray_head import ray_head, ray_worker
from tests.support import decode_audio, wait_until

pytestmark = [pytest.mark.serve,
              pytest.mark.skipif(importlib.util.find_spec("TTS") is None, reason="the coqui extra is not installed")]


def _shipped_config_with_two_xtts_replicas() -> dict:
    raw = yaml.safe_load((PROJECT_DIR / "serve_config.yaml").read_text())
    xtts = next(app for app in raw["applications"] if app["name"] == "xtts")["deployments"][0]
    xtts.pop("autoscaling_config")
    xtts["num_replicas"] = 2
    return raw


def _all_running(url: str) -> dict | None:
    applications = {app["name"]: app for app in httpx.get(f"{url}/api/deployments").json()["applications"]}
    return applications if all(app["status"] == "RUNNING" for app in applications.values()) else None


def test_declared_gpus_take_the_shipped_shares_and_a_replica_without_cuda_speaks_on_the_cpu(tmp_path_factory):
    root = make_coqui_root(tmp_path_factory, "gpu-shares")
    with ray_head(num_cpus=8, num_gpus=2) as head:
        config = embedded_config.prepare_config(_shipped_config_with_two_xtts_replicas(), root, "127.0.0.1",
                                                head.http_port, 2, ["vits", "xtts"], rvc=RVC)
        head.deploy(config, root / "serve_config.yaml")
        url = head.wait_until_ready()

        applications = wait_until(lambda: _all_running(url), "every application running", 240, 1.0)
        xtts = next(d for d in applications["xtts"]["deployments"] if d["name"] == "tts-xtts")
        vits = next(d for d in applications["vits"]["deployments"] if d["name"] == "tts-vits")
        rvc = next((d for d in applications["rvc"]["deployments"] if d["name"] == "rvc"), None) if RVC else None
        xtts_placed = list(xtts["placements"].values())
        vits_placed = list(vits["placements"].values())
        rvc_placed = list(rvc["placements"].values()) if rvc else []
        assert [p["gpu_share"] for p in xtts_placed] == [0.5, 0.5] and [p["gpu_share"] for p in vits_placed] == [0.25]
        assert [p["gpu_share"] for p in rvc_placed] == ([0.25] if RVC else [])
        # Each replica sees one GPU of the two, and the shares on one GPU never add up to more than it.
        placed = xtts_placed + vits_placed + rvc_placed
        assert all(len(p["gpu_ids"]) == 1 and p["gpu_ids"][0] in ("0", "1") for p in placed), placed
        per_gpu = {gpu: sum(p["gpu_share"] for p in placed if p["gpu_ids"] == [gpu]) for gpu in ("0", "1")}
        assert max(per_gpu.values()) <= 1.0, per_gpu
        # No CUDA here: `auto` speaks on the CPU and says why.
        assert xtts["devices"] == {"cpu": 2} and vits["devices"] == {"cpu": 1}
        assert xtts["warnings"] == ["given 0.5 GPU but sees no CUDA device: running on the CPU (set device: cpu "
                                    "and num_gpus: 0 to free the share, device: cuda to fail instead)"]
        assert "given 0.25 GPU" in vits["warnings"][0]
        if rvc:
            assert rvc["devices"] == {"cpu": 1} and "given 0.25 GPU" in rvc["warnings"][0]

        status = subprocess.run([sys.executable, str(PROJECT_DIR / "cli.py"), "status", "--url", url],
                                capture_output=True, text=True, timeout=120, cwd=PROJECT_DIR)
        assert status.returncode == 0, status.stderr
        assert "2/2 running on cpu" in status.stdout and "warning: given 0.5 GPU but sees no CUDA device" in \
            status.stdout, status.stdout
        if rvc:
            lines = status.stdout.splitlines()
            rvc_line = next(number for number, line in enumerate(lines) if line.split()[:2] == ["rvc", "rvc"])
            assert "warning: given 0.25 GPU" in lines[rvc_line + 1], status.stdout

        for engine in ("vits", "xtts"):
            spoken = httpx.post(f"{url}/api/tts-generate", timeout=120,
                                data={"text_input": "Spoken on the CPU.", "engine": engine})
            assert spoken.status_code == 200, spoken.text
            audio = httpx.get(f"{url}{spoken.json()['output_file_url']}", timeout=60)
            assert decode_audio(audio.content).duration_s > 0.1
        assert head.serve("shutdown", "-y").returncode == 0


def test_device_cuda_without_cuda_fails_the_launch_with_the_replicas_own_reason(tmp_path_factory):
    root = make_coqui_root(tmp_path_factory, "gpu-cuda")
    raw = yaml.safe_load((PROJECT_DIR / "serve_config.yaml").read_text())
    next(app for app in raw["applications"] if app["name"] == "vits")["args"]["device"] = "cuda"
    config = root / "cuda_config.yaml"
    config.write_text(yaml.safe_dump(raw))
    with ray_head(num_cpus=8, num_gpus=2) as head:
        launch = subprocess.run(
            [sys.executable, str(PROJECT_DIR / "cli.py"), "run", "--address", head.gcs_address, "--config", str(config),
             "--root", str(root), "--port", str(head.http_port), "--engines", "vits", "--rvc", "off",
             "--timeout", "300"], env=head.env, capture_output=True, text=True, timeout=400, cwd=PROJECT_DIR)
        assert launch.returncode != 0
        assert "could not start: vits: Failed to update the deployments ['tts-vits']. (tts-vits: EngineError: " \
               "device 'cuda' was requested but this replica sees no CUDA device)" in launch.stdout + launch.stderr, \
            (launch.stdout + launch.stderr)[-3000:]
        head.serve("shutdown", "-y")


def test_a_replica_that_does_not_fit_stays_pending_and_status_says_why(tmp_path_factory):
    root = make_coqui_root(tmp_path_factory, "gpu-pending")
    # One GPU for 1.25 GPUs of shares: one replica cannot be placed. Serve says why after this long.
    with ray_head(num_cpus=8, num_gpus=1, environment={"RAY_SERVE_SLOW_STARTUP_WARNING_S": "2",
                                                       "RAY_SERVE_SLOW_STARTUP_WARNING_PERIOD_S": "2"}) as head:
        config = embedded_config.prepare_config(_shipped_config_with_two_xtts_replicas(), root, "127.0.0.1",
                                                head.http_port, 1, ["vits", "xtts"], rvc=False)
        head.deploy(config, root / "serve_config.yaml")
        url = f"http://127.0.0.1:{head.http_port}"
        pending = wait_until(lambda: _pending(url), "a deployment saying a replica waits to be scheduled", 240, 1.0)
        assert "Resources required for each replica" in pending["message"] and '"GPU": ' in pending["message"]
        assert pending["replicas"].get("RUNNING", 0) < pending["target_replicas"]

        # Which replica waits can change while the others start; once those that fit run, Serve's
        # message about the one left over holds still.
        shown = wait_until(lambda: _status_saying(url, "to be scheduled"), "status naming the waiting replica",
                           240, 1.0)
        assert "Resources required for each replica" in shown, shown
        head.serve("shutdown", "-y")


def _status_saying(url: str, words: str) -> str | None:
    status = subprocess.run([sys.executable, str(PROJECT_DIR / "cli.py"), "status", "--url", url],
                            capture_output=True, text=True, timeout=120, cwd=PROJECT_DIR)
    return status.stdout if words in status.stdout else None


def _pending(url: str) -> dict | None:
    """The deployment whose message says a replica waits for resources, if one does yet."""
    try:
        applications = httpx.get(f"{url}/api/deployments", timeout=10).json()["applications"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None  # the ingress is not up yet
    # Once the replicas that fit run, only the one that waits for a GPU is left for Serve to speak of.
    return next((deployment for app in applications for deployment in app["deployments"]
                 if "to be scheduled" in deployment.get("message", "")
                 and deployment["replicas"].get("RUNNING", 0) == deployment["target_replicas"] - 1), None)


def test_on_a_cpu_head_with_a_gpu_worker_the_gpu_engines_run_on_the_worker(tmp_path_factory):
    """As cluster.yaml lays a cluster out: a head without GPUs and a worker node that has them.
    The VITS and XTTS replicas are placed on the worker with their shares of its GPUs; Serve's
    controller stays on the head, and the API answers through it."""
    root = make_coqui_root(tmp_path_factory, "gpu-worker")
    with ray_head(num_cpus=4, num_gpus=0) as head, ray_worker(head, num_cpus=4, num_gpus=2) as worker:
        gpus = sum(node["resources_total"].get("GPU", 0) for node in head.nodes())
        assert gpus == 2, "the cluster's GPUs are the worker's"
        config = embedded_config.prepare_config(yaml.safe_load((PROJECT_DIR / "serve_config.yaml").read_text()),
                                                root, "127.0.0.1", head.http_port, gpus, ["vits", "xtts"], rvc=False)
        head.deploy(config, root / "serve_config.yaml")
        url = head.wait_until_ready()
        applications = wait_until(lambda: _all_running(url), "every application running", 300, 1.0)

        details = head.serve_details()
        head_node = next(node["node_id"] for node in head.nodes() if node["is_head_node"])
        assert details["controller_info"]["node_id"] == head_node
        for engine, share in (("vits", 0.25), ("xtts", 0.5)):
            replicas = details["applications"][engine]["deployments"][f"tts-{engine}"]["replicas"]
            assert {replica["node_id"] for replica in replicas if replica["state"] == "RUNNING"} == {worker}, engine
            placed = next(d for d in applications[engine]["deployments"] if d["name"] == f"tts-{engine}")["placements"]
            assert [(p["gpu_share"], len(p["gpu_ids"])) for p in placed.values()] == [(share, 1)], placed

            spoken = httpx.post(f"{url}/api/tts-generate", timeout=120,
                                data={"text_input": "Spoken on the worker.", "engine": engine})
            assert spoken.status_code == 200, spoken.text
            assert decode_audio(httpx.get(f"{url}{spoken.json()['output_file_url']}", timeout=60).content
                                ).duration_s > 0.1
        assert head.serve("shutdown", "-y").returncode == 0

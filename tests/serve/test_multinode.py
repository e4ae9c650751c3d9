"""A real multi-node Ray cluster (head + two worker nodes on this machine, in a child process):
engine replicas spread over the workers, requests succeed through the proxy, a voice uploaded
through the ingress on the head is listed by both ingress replicas and spoken by the replicas on
the workers, and when a worker node is removed under load no request fails and Serve reschedules
the lost replica. Every node is this machine, so the shared file system the README asks for is its
own disk here: what this shows is that no node keeps a copy of its own."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest

from tests.conftest import PROJECT_DIR, make_root

pytestmark = pytest.mark.serve
PORT = 7873


def test_losing_a_worker_node_under_load_fails_no_request(tmp_path_factory):
    root = make_root(tmp_path_factory, "multinode-root")
    run = subprocess.run([sys.executable, "-m", "tests.multinode_cluster", str(root), str(PORT)], cwd=PROJECT_DIR,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])

    assert result["upload"][0] == 201, result["upload"]
    assert len(result["listing_replicas"]) == 2 and all(result["uploaded_listed"]), \
        f"listed at once by both ingress replicas: {result['uploaded_listed']} {result['listing_replicas']}"
    assert result["uploaded_spoken"] == [200] * 6, "the uploaded voice spoken on the workers' replicas"
    # Piper samples its durations: the slowed voice runs 1.7-2.3x the default one's length.
    assert all(1.5 < ratio < 2.6 for ratio in result["uploaded_length_ratios"]), result["uploaded_length_ratios"]
    assert len(set(result["nodes_before"])) == 2, "one replica on each worker node"
    assert set(result["nodes_before"]) == set(result["worker_nodes"])
    assert result["statuses_before_removal"] and set(result["statuses_before_removal"]) == {200}
    after = result["statuses_after_removal"]
    assert len(after) >= 8 and set(after) == {200}, f"client-visible failures after the node left: {result['errors']}"
    assert result["removed_node"] not in result["nodes_after"] and len(result["nodes_after"]) == 2
    leftover = [p for p in psutil.process_iter(["cmdline"])
                if result["gcs_address"] in " ".join(p.info["cmdline"] or [])]
    assert not leftover, f"processes of the test cluster left running: {leftover}"

"""How `alltalk-serve status` words a deployment's replicas (cli._replicas), from the view
`/api/deployments` gives (deployments/rollout.py)."""

from __future__ import annotations

import cli


def test_only_a_deployment_that_autoscales_to_zero_reads_as_scaled_to_zero():
    autoscaled = {"replicas": {}, "target_replicas": 0, "autoscaling": {"min_replicas": 0, "max_replicas": 1}}
    assert cli._replicas(autoscaled) == "0 replicas (scaled to zero) (autoscaling 0-1)"
    # Fixed at none (num_replicas: 0): nothing will start one on demand.
    assert cli._replicas({"replicas": {}, "target_replicas": 0}) == "0/0 running"


def test_replicas_by_state_and_device():
    starting = {"replicas": {"RUNNING": 1, "STARTING": 1}, "target_replicas": 2, "devices": {"cpu": 1},
                "autoscaling": {"min_replicas": 1, "max_replicas": 4}}
    assert cli._replicas(starting) == "1/2 running on cpu, 1 starting (autoscaling 1-4)"
    mixed = {"replicas": {"RUNNING": 3}, "target_replicas": 3, "devices": {"cuda": 2, "cpu": 1}}
    assert cli._replicas(mixed) == "3/3 running on cpu (1), cuda (2)"

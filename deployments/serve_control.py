"""What this project asks of Serve's controller beyond Serve's public API: the details of every
application (what `serve status` and Serve's REST API show, with the config each application was
deployed with and its replicas), and deploying a whole declarative config from a running process
(what `serve deploy` does). Both go through Serve's private client; this is the only module that
touches it, and tests/serve/test_serve_control.py fails when a Ray upgrade changes what it gives."""

from __future__ import annotations

import re
from typing import Any

from ray import serve
from ray.serve.schema import ServeDeploySchema


def serve_details() -> dict[str, Any]:
    """`applications` (by name: `status`, `message`, `deployed_app_config`, `last_deployed_time_s`,
    `deployments` with their `status`, `deployment_config` and `replicas`), `http_options` and
    `proxy_location`, as plain JSON values."""
    return serve.context._get_global_client().get_serve_details()


def deploy_config(config: ServeDeploySchema) -> None:
    """Makes Serve run exactly the applications of `config` (returns once the controller took it)."""
    serve.context._get_global_client().deploy_apps(config)


def message_reason(message: str) -> str:
    """What Serve's message about a deployment comes down to: of a replica's traceback (a constructor
    that failed), its last line, the exception named without its module; else the message itself."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not any("Traceback (most recent call last)" in line for line in lines):
        return " ".join(lines)
    return re.sub(r"^[\w.]+\.(\w+: )", r"\1", lines[-1])

"""The Serve application entry of an engine, in one place for everyone who starts one: the
launcher (embedded_config.prepare_config), the ingress starting an engine on demand, and, for the
user_config alone, the builder that `serve deploy` runs. An entry is the engine's configured one
(serve_config.yaml's) or the builder's defaults, with the server root in its args and the choices
saved over the API (model, DeepSpeed, LowVRAM) in its deployment's user_config."""

from __future__ import annotations

import copy
from typing import Any

from .engine_calls import engine_deployment_name


def engine_user_config(configured: dict[str, Any] | None, saved: dict[str, Any]) -> dict[str, Any]:
    """The deployment's user_config: the configured one with the saved choices over it (a choice
    made over the API wins over the file, as it was made later). Never None: Serve then calls the
    replicas' reconfigure, which reports what each serves."""
    return {**(configured or {}), **saved}


def engine_app_spec(engine: str, root: str, saved: dict[str, Any], import_path: str,
                    configured: dict[str, Any] | None = None) -> dict[str, Any]:
    """The application entry that runs `engine` (see the module's docstring)."""
    deployment_name = engine_deployment_name(engine)
    app = copy.deepcopy(configured) if configured else {
        "name": engine, "route_prefix": None, "import_path": import_path, "args": {"engine": engine},
        "deployments": [{"name": deployment_name}]}
    app.setdefault("args", {})["root"] = root
    deployments = app.setdefault("deployments", [])
    entry = next((d for d in deployments if d.get("name") == deployment_name), None)
    if entry is None:
        entry = {"name": deployment_name}
        deployments.append(entry)
    entry["user_config"] = engine_user_config(entry.get("user_config"), saved)
    return app

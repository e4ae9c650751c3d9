"""HandleOnlyIngress: the ingress of an application that is reached only through handles (each
engine, RVC).

Serve needs an ingress deployment in every application, and refuses a custom request router on it
when its HAProxy ingress is on (HAProxy balances HTTP over ingress replicas itself), even in an
application with no HTTP route. The engines' routing (deployments/routing.py) is on the engine
deployment, so that deployment is bound under this one and callers take the engine deployment's
own handle (deployments/engine_calls.py). Nothing calls this deployment: it scales to zero and
runs no replica (serve_app.HANDLE_ONLY_INGRESS_OPTIONS).
"""

from __future__ import annotations

from ray.serve.handle import DeploymentHandle


class HandleOnlyIngress:
    """Holds the handle of the deployment bound under it, as Serve's composition wants; serves
    nothing itself."""

    def __init__(self, served: DeploymentHandle):
        self.served = served

"""Serve's own floor for the shape of an AllTalk request, to set this project's overhead against:
an application of two deployments, deployed beside the server on the same Serve and HTTP front,
whose ingress answers POST by streaming chunks of the sizes a text's sentences have from the other
deployment (as the ingress calls an engine) and GET by sending their bytes at once (as the file).
No synthesis, no files, no middleware: what is left is the HTTP front, the ingress's HTTP server,
the handle call and the stream's transport."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from fastapi.responses import Response
from ray import serve
from ray.serve.handle import DeploymentHandle

APP_NAME = "serve-floor"
ROUTE_PREFIX = "/serve-floor"
_api = FastAPI()


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
class FloorSource:
    async def chunks(self, sizes: list[int]) -> AsyncIterator[bytes]:
        for size in sizes:
            yield bytes(size)


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
@serve.ingress(_api)
class FloorIngress:
    def __init__(self, source: DeploymentHandle):
        self.source = source.options(stream=True)

    @_api.post("/speak")
    async def speak(self, sizes: str) -> dict[str, object]:
        """`sizes`: the chunks' bytes, comma-separated."""
        size = 0
        async for chunk in self.source.chunks.remote([int(part) for part in sizes.split(",")]):
            size += len(chunk)
        return {"status": "generate-success", "bytes": size}

    @_api.get("/file")
    async def file(self, size: int) -> Response:
        return Response(bytes(size), media_type="audio/wav")


def deploy() -> None:
    """On the Serve this process is connected to (the embedded server's), beside its applications."""
    serve.run(FloorIngress.bind(FloorSource.bind()), name=APP_NAME, route_prefix=ROUTE_PREFIX)


def measure(client: httpx.Client, runs: int, sizes: list[int]) -> dict[str, list[float]]:
    """POST, GET and both (ms) through the server's HTTP front, after a warm-up: `sizes` are the
    bytes of the chunks the engine would stream (a text's sentences)."""
    post, get, total = [], [], []
    for run in range(runs + 5):
        started = time.perf_counter()
        client.post(f"{ROUTE_PREFIX}/speak", params={"sizes": ",".join(map(str, sizes))}).raise_for_status()
        posted = time.perf_counter()
        client.get(f"{ROUTE_PREFIX}/file", params={"size": sum(sizes)}).raise_for_status()
        done = time.perf_counter()
        if run >= 5:
            post.append(1000 * (posted - started))
            get.append(1000 * (done - posted))
            total.append(1000 * (done - started))
    return {"Serve alone: POST (handle call, the sentences' chunks streamed)": post, "Serve alone: GET (bytes)": get,
            "Serve alone: POST + GET": total}

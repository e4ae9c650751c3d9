"""create_app: the FastAPI application of the AllTalk API over one SpeechService."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from ..config.access import AccessArgs
from ..config.app_args import JobArgs, VoiceLibraryArgs
from ..jobs.runner import JobRunner
from ..pipeline import SpeechPipeline
from ..retention import retention_loop, retention_seconds
from ..service import SpeechService
from . import (
    control_routes,
    elevenlabs_routes,
    file_routes,
    generate_routes,
    job_routes,
    openai_routes,
    page_routes,
    rvc_routes,
    status_routes,
    tools_routes,
    voice_routes,
)
from .access import AccessControl
from .errors import install_error_handlers
from .generations import GenerationsInFlight
from .request_log import RequestLog
from .route_policy import RouteTable
from .voice_routes import voice_uploads

STALE_UPLOAD_S = 3600.0
"""An upload's staging folder this old at start was left by a replica that stopped mid-upload."""
NO_KEYS: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())


def create_app(service: SpeechService, access: AccessArgs | None = None,
               keys: tuple[frozenset[str], frozenset[str]] = NO_KEYS, retention_check_s: float = 600.0,
               request_logger: logging.Logger | None = None,
               generations: GenerationsInFlight | None = None,
               deployments: Callable[[], Awaitable[list[dict[str, object]]]] | None = None,
               jobs: JobArgs | None = None, voices: VoiceLibraryArgs | None = None) -> FastAPI:
    """`keys`: (user keys, admin keys), read by the caller (`AccessArgs.keys`); none: an open API.
    `request_logger` gets one line per request (`RequestLog`); metrics go to `service.telemetry`.
    `generations`: the generations in flight, counted by the app; whoever stops the server sets
    `stopping` on it and waits for none to be left. `deployments`: what runs where, for operators
    (`/api/deployments`; Serve's applications behind the Serve ingress). `jobs`: limits and share
    of long-text jobs, which this app runs in the background while it serves. `voices`: the voice
    library's limits (uploads)."""
    access = access or AccessArgs()
    generations = generations or GenerationsInFlight()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        retention = asyncio.create_task(retention_loop(
            lambda: (service.outputs().folder, service.settings.config.delete_output_wavs), retention_check_s))
        running_jobs = asyncio.create_task(app.state.jobs.scheduler.run())
        await asyncio.to_thread(app.state.voices.library.sweep_incoming, STALE_UPLOAD_S, time.time())
        try:
            yield
        finally:
            retention.cancel()
            running_jobs.cancel()
            await asyncio.gather(running_jobs, return_exceptions=True)

    app = FastAPI(title="AllTalk-compatible TTS server on Ray Serve", version="0.1.0",
                  description="The AllTalk v2 HTTP API, served by Ray Serve deployments.", lifespan=lifespan)
    app.state.service = service
    app.state.generations = generations
    app.state.deployments = deployments
    app.state.pipeline = SpeechPipeline(service.engines, service.rvc, service.runner, service.settings,
                                        service.detector, service.narrator_concurrency,
                                        access.max_narrator_segments)
    app.state.jobs = JobRunner(lambda: service.outputs().folder / "jobs", app.state.pipeline, jobs or JobArgs(),
                               service.telemetry,
                               keep_s=lambda: retention_seconds(service.settings.config.delete_output_wavs))
    app.state.voices = voice_uploads(service, voices or VoiceLibraryArgs())
    for module in (status_routes, control_routes, generate_routes, openai_routes, elevenlabs_routes, job_routes,
                   voice_routes, tools_routes, rvc_routes, file_routes, page_routes):
        app.include_router(module.router)
    install_error_handlers(app)
    app.add_middleware(AccessControl, args=access, user_keys=keys[0], admin_keys=keys[1], generations=generations,
                       routes=RouteTable.of(app))
    if access.cors_origins:  # before access control: a browser's preflight is answered without a key
        app.add_middleware(CORSMiddleware, allow_origins=access.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["x-request-id", "content-disposition"])
    # Outermost: every request gets an id and a log line, refused and preflight ones included.
    app.add_middleware(RequestLog, telemetry=service.telemetry,
                       logger=request_logger or logging.getLogger("speechcore.requests"),
                       templates=list(app.openapi()["paths"]))
    return app


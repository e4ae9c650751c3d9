"""Route policies (speechcore/api/route_policy.py): every route of the app declares who may call it,
whether it speaks (counted by the drain and the per-client share, refused while the server stops)
and its body limit; the access middleware reads the declaration, not a table of paths kept
elsewhere, so a new route cannot escape it."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from speechcore.api import create_app
from speechcore.api.access import AccessControl
from speechcore.api.generations import GenerationsInFlight
from speechcore.api.route_policy import Access, BodyLimit, RouteTable, UnclassifiedRoute, policy
from speechcore.config.access import AccessArgs
from speechcore.config.paths import ServerPaths
from speechcore.config.store import SettingsStore
from speechcore.service import SpeechService
from tests.contract.test_access import CONTROL_ENDPOINTS
from tests.support import InProcessEngineClient, ToneEngine

SPEAKING = ["/api/previewvoice/", "/api/tts-generate", "/api/tts-generate-streaming", "/api/voice2rvc",
            "/v1/audio/speech", "/v1/text-to-speech/{voice_id:path}", "/v1/text-to-speech/{voice_id:path}/stream",
            "/v1/text-to-speech/{voice_id:path}/stream-input"]


@pytest.fixture
def table(tmp_path):
    service = SpeechService(SettingsStore(ServerPaths.at(tmp_path)), {"piper": InProcessEngineClient(ToneEngine())},
                            ["piper"], "piper")
    app = create_app(service)
    return app, RouteTable.of(app)


def test_every_route_of_the_app_is_classified(table):
    app, routes = table
    assert len(routes.routes) == len(list(iter_route_contexts(app.routes))) >= 40
    assert routes.paths(Access.PUBLIC) == ["/", "/api/ready"]
    assert sorted({path for route, declared in routes.routes if declared.speaks
                   for path in [route.path]}) == SPEAKING
    control = {path.replace("/xtts/a.wav", "/{engine}/{name}") for _method, path in CONTROL_ENDPOINTS}
    assert set(routes.paths(Access.ADMIN)) == control
    assert {route.path for route, declared in routes.routes if declared.body is BodyLimit.VOICE_UPLOAD} == \
        {"/api/voices/xtts", "/api/voices/piper", "/api/voices/rvc", "/api/voices/{engine}/{name}"}


def test_a_route_added_without_a_policy_fails_the_build():
    app = FastAPI()
    router = APIRouter()

    @router.post("/api/new-speech")
    async def new_speech() -> dict[str, str]:
        return {}

    app.include_router(router)
    with pytest.raises(UnclassifiedRoute, match="/api/new-speech"):
        RouteTable.of(app)


def test_a_new_speaking_route_is_counted_and_refused_on_stop_by_its_declaration_alone():
    app = FastAPI()
    generations = GenerationsInFlight()
    seen = []

    @app.post("/api/new-speech/{voice}")
    @policy(speaks=True)
    async def new_speech(voice: str) -> dict[str, int]:
        seen.append(generations.per_client["addr:testclient"])
        return {"in_flight": seen[-1]}

    app.add_middleware(AccessControl, args=AccessArgs(), user_keys=frozenset(), admin_keys=frozenset(),
                       generations=generations, routes=RouteTable.of(app))
    with TestClient(app) as client:
        assert client.post("/api/new-speech/joe").json() == {"in_flight": 1}, "counted while it runs"
        generations.stopping = True
        refused = client.post("/api/new-speech/joe")
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert seen == [1], "refused before it reached the route"

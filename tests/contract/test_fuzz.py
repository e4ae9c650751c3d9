"""Fuzzing from the server's own OpenAPI document (schemathesis), over real HTTP: uvicorn on
127.0.0.1 in front of the app the ingress serves, over the in-process Piper engine. A bounded number
of generated requests per endpoint; none may get a 5xx, none may leave a file outside the server's
folders, and the server answers Ready afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from speechcore.api import create_app
from tests.conftest import build_asgi_service
from tests.support import serve_over_http

CASES_PER_ENDPOINT = 60
NOT_INSTALLED = {("GET", "/api/trigger-analysis", 501)}
"""A documented 501 (Whisper is not installed on the test machine), not a failure of the server."""
WRITABLE = ("outputs", "system/tts_engines")
"""Where requests may write: generated files, and the settings the control endpoints save."""


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    service = build_asgi_service(tmp_path_factory, "fuzz-root")
    root = service.settings.paths.root
    with serve_over_http(create_app(service)) as base:
        yield base, root


@pytest.fixture(scope="module")
def api_schema(fuzzed_server):
    base, _ = fuzzed_server
    return schemathesis.openapi.from_url(f"{base}/openapi.json")


@pytest.fixture(scope="module")
def untouched(fuzzed_server) -> Iterator[None]:
    """Files outside the writable folders, and beside the root, are the same after all cases."""
    _, root = fuzzed_server
    def outside() -> set[Path]:
        return {p for p in _files(root) if not any(p.relative_to(root).as_posix().startswith(w) for w in WRITABLE)}
    before, beside = outside(), set(root.parent.iterdir())
    yield
    assert outside() == before, f"files written outside {WRITABLE}: {sorted(outside() - before)}"
    assert set(root.parent.iterdir()) == beside


def test_no_request_the_schema_allows_gets_a_5xx(fuzzed_server, api_schema, untouched):
    base, _ = fuzzed_server
    sent: dict[str, int] = {}
    failures: list[str] = []
    for found in api_schema.get_all_operations():
        operation = found.ok()
        label = f"{operation.method.upper()} {operation.path}"

        @settings(max_examples=CASES_PER_ENDPOINT, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def send(case) -> None:
            response = case.call(base_url=base, timeout=120)
            sent[label] = sent.get(label, 0) + 1
            if response.status_code >= 500 and (operation.method.upper(), operation.path,
                                                response.status_code) not in NOT_INSTALLED:
                failures.append(f"{label} -> {response.status_code}: {response.text[:200]}")

        send()
    print(f"fuzzed {sum(sent.values())} requests over {len(sent)} endpoints: {sent}")
    assert len(sent) >= 20
    assert not failures, "\n".join(failures)
    assert httpx.get(f"{base}/api/ready").text == "Ready"

"""Import direction, checked in fresh interpreters: the ingress never loads torch, onnxruntime, an
engine or RVC; the core, the engines and RVC never load Ray or FastAPI."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


def loaded_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_the_ingress_loads_no_model_code():
    loaded = loaded_after_import("deployments.ingress")
    assert not {"torch", "onnxruntime", "piper", "engines", "rvc", "transformers"} & loaded


@pytest.mark.parametrize("module", ["serve_app", "embedded", "embedded_config"])
def test_the_builders_and_the_launcher_load_no_model_code(module):
    assert not {"torch", "transformers", "rvc"} & loaded_after_import(module)


def test_rvc_loads_no_ray_and_no_web_framework():
    pytest.importorskip("pyworld", reason="the rvc extra is not installed")
    assert not {"ray", "fastapi", "starlette"} & loaded_after_import("rvc.chunks")


@pytest.mark.parametrize(
    "module", ["speechcore.service", "speechcore.config.store", "engines.piper", "engines.registry",
               "engines.devices", "deployments.engine_host"]
)
def test_core_engines_and_the_engine_host_load_no_ray(module):
    assert "ray" not in loaded_after_import(module)


@pytest.mark.parametrize("module", ["speechcore.service", "engines.piper"])
def test_core_service_and_engines_load_no_web_framework(module):
    assert not {"fastapi", "starlette"} & loaded_after_import(module)


@pytest.mark.parametrize("module", ["rvc.chunks", "engines.piper"])
def test_replica_code_loads_none_of_the_ingress_side_core(module):
    """What RVC and engine replicas share with the core is the leaf types (requests, PcmChunk,
    safe paths, server paths), not AllTalk's settings files or the generation pipeline."""
    if module.startswith("rvc"):
        pytest.importorskip("pyworld", reason="the rvc extra is not installed")
    loaded = loaded_after_import(module)
    assert not {"speechcore.config.alltalk", "speechcore.config.store", "speechcore.pipeline",
                "speechcore.service"} & loaded


SHARED_LEAF = {"speechcore", "speechcore.engine_types", "speechcore.rvc_requests", "speechcore.audio",
               "speechcore.audio.pcm", "speechcore.safe_paths", "speechcore.config", "speechcore.config.paths",
               "speechcore.text", "speechcore.text.sentences", "speechcore.voices", "speechcore.voices.layout"}
"""What engine and RVC replicas share with the ingress: requests, errors, PcmChunk, safe paths,
server paths, the voice library's folder layout (and the sentence splitter). They import nothing
else of the project."""
PACKAGES = {"speechcore", "speechcore.audio", "speechcore.config", "speechcore.text", "speechcore.voices"}


@pytest.mark.parametrize("module", sorted(SHARED_LEAF - PACKAGES))
def test_the_shared_types_are_a_leaf(module):
    ours = {name for name in loaded_after_import(module)
            if name.split(".")[0] in {"speechcore", "engines", "rvc", "deployments", "serve_app"}}
    assert ours <= SHARED_LEAF, ours - SHARED_LEAF


def test_engines_and_rvc_import_only_the_shared_leaf_of_the_core():
    """Read from the source, so that a new import is caught whether or not the module imports here
    (the coqui and rvc extras may be missing)."""
    root = Path(PROJECT)
    found = {}
    for source in [*(root / "engines").glob("*.py"), *(root / "rvc").glob("*.py")]:
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.split(".")[0] == "speechcore":
                    found.setdefault(name, source.relative_to(root).as_posix())
    assert set(found) <= SHARED_LEAF, {module: found[module] for module in set(found) - SHARED_LEAF}

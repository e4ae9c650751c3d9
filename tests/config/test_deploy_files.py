"""serve_config.yaml, cluster.yaml and rayservice.yaml are valid for the Ray they will meet, build
without a cluster, and start every node behind the default HTTP front."""

import importlib
import json
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from pydantic import ValidationError
from ray.serve import Application
from ray.serve.schema import ServeDeploySchema

import embedded_config
import serve_app
from embedded_proxy import DEFAULT_PROXY, HAPROXY_SHIM, node_env
from speechcore.config.engine_choices import saved_engine_choices
from speechcore.config.paths import ServerPaths

PROJECT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = yaml.safe_load((PROJECT / "serve_config.yaml").read_text())


def builder(import_path: str):
    module, _, attr = import_path.partition(":")
    return getattr(importlib.import_module(module), attr)


def test_serve_config_validates_against_serves_schema():
    schema = ServeDeploySchema.model_validate(SERVE_CONFIG)
    assert [app.name for app in schema.applications] == ["alltalk", "piper", "vits", "xtts", "rvc"]
    assert schema.applications[0].route_prefix == "/"
    assert all(app.route_prefix is None for app in schema.applications[1:])


def test_coqui_engines_declare_fractional_gpus():
    gpus = {app.name: app.deployments[0].ray_actor_options.num_gpus
            for app in ServeDeploySchema.model_validate(SERVE_CONFIG).applications}
    assert (gpus["vits"], gpus["xtts"], gpus["rvc"]) == (0.25, 0.5, 0.25)
    assert not gpus["piper"] and not gpus["alltalk"]


@pytest.mark.parametrize("app", SERVE_CONFIG["applications"], ids=lambda a: a["name"])
def test_each_application_builds_and_its_overrides_name_real_deployments(app, tmp_path):
    built = builder(app["import_path"])({**app["args"], "root": str(tmp_path)})
    assert isinstance(built, Application)
    assert {d["name"] for d in app["deployments"]} <= deployment_names(built)


def deployment_names(app: Application) -> set[str]:
    """The deployments an application builds: its ingress and those bound under it."""
    bound = app._bound_deployment
    names = {bound.name}
    for arg in [*bound.init_args, *bound.init_kwargs.values()]:
        if isinstance(arg, Application):
            names |= deployment_names(arg)
    return names


def test_engine_applications_route_to_the_engine_under_an_ingress_that_runs_no_replica(tmp_path):
    """Behind HAProxy, Serve refuses a custom request router on an application's ingress: the
    engine with the router is bound under a HandleOnlyIngress that scales to zero."""
    for app in SERVE_CONFIG["applications"][1:]:
        built = builder(app["import_path"])({**app["args"], "root": str(tmp_path)})
        ingress = built._bound_deployment
        assert ingress.name == "entry" and ingress._deployment_config.autoscaling_config.min_replicas == 0
        engine = ingress.init_args[0]._bound_deployment
        assert engine.name == app["deployments"][0]["name"]
        assert engine._deployment_config.request_router_config.request_router_class.endswith("LeastInFlightRouter")


def test_bad_args_fail_at_build_time(tmp_path):
    with pytest.raises(ValidationError, match="default_engine"):
        serve_app.build_ingress_app({"root": str(tmp_path), "engines": {"piper": "piper"}, "default_engine": "xtts"})
    with pytest.raises(ValidationError, match="extra"):
        serve_app.build_engine_app({"engine": "piper", "root": str(tmp_path), "thread": 2})
    with pytest.raises(ValueError, match="unknown engine"):
        serve_app.build_engine_app({"engine": "espeak", "root": str(tmp_path)})


def test_prepare_config_fills_root_address_and_drops_gpus_without_a_gpu(tmp_path):
    prepared = embedded_config.prepare_config(SERVE_CONFIG, tmp_path, "127.0.0.1", 9999, gpus=0)
    assert prepared.http_options.port == 9999
    assert all(app.args["root"] == str(tmp_path) for app in prepared.applications)
    assert all(not app.deployments[0].ray_actor_options.num_gpus for app in prepared.applications)
    with_gpu = embedded_config.prepare_config(SERVE_CONFIG, tmp_path, "127.0.0.1", 9999, gpus=1)
    assert with_gpu.applications[3].deployments[0].ray_actor_options.num_gpus == 0.5


def test_prepare_config_keeps_only_the_chosen_engines(tmp_path):
    prepared = embedded_config.prepare_config(SERVE_CONFIG, tmp_path, "127.0.0.1", 9999, gpus=0,
                                              engines=["piper", "xtts"], rvc=False)
    assert [app.name for app in prepared.applications] == ["alltalk", "piper", "xtts"]
    assert "rvc_app" not in prepared.applications[0].args
    assert prepared.applications[0].args["engines"] == {"piper": "piper", "xtts": "xtts"}
    on_demand = prepared.applications[0].args["engine_apps"]["vits"]  # for /api/enginereload, as configured
    assert on_demand["args"] == {"engine": "vits", "root": str(tmp_path), "threads": 2}
    assert on_demand["deployments"][0]["ray_actor_options"]["num_gpus"] == 0, "fitted to the machine"
    only_xtts = embedded_config.prepare_config(SERVE_CONFIG, tmp_path, "127.0.0.1", 9999, gpus=0, engines=["xtts"])
    assert only_xtts.applications[0].args["default_engine"] == "xtts"
    assert embedded_config.required_cpus(prepared) == pytest.approx(0.25 + 2 * 1 + 2 * 1), "room for max_replicas"


def test_prepare_config_keeps_rvc_when_asked(tmp_path):
    prepared = embedded_config.prepare_config(SERVE_CONFIG, tmp_path, "127.0.0.1", 9999, gpus=0, engines=["piper"])
    assert [app.name for app in prepared.applications] == ["alltalk", "piper", "rvc"]
    assert prepared.applications[0].args["rvc_app"] == "rvc"


def test_the_embedded_server_runs_rvc_when_a_voice_is_installed(tmp_path):
    pytest.importorskip("pyworld", reason="the rvc extra is not installed")
    assert not embedded_config.rvc_available(tmp_path)
    (tmp_path / "models" / "rvc_voices" / "someone").mkdir(parents=True)
    (tmp_path / "models" / "rvc_voices" / "someone" / "someone.pth").write_bytes(b"")
    assert embedded_config.rvc_available(tmp_path)


def test_the_embedded_server_finds_coqui_engines_by_their_model_folders(tmp_path):
    assert embedded_config.available_engines(tmp_path) == ["piper"]
    (tmp_path / "models" / "xtts" / "some-model").mkdir(parents=True)
    assert embedded_config.available_engines(tmp_path) == ["piper", "xtts"]


def test_cluster_yaml_validates_against_the_launcher_schema_in_the_ray_wheel():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((PROJECT / "cluster.yaml").read_text())
    jsonschema.validate(config, schema)
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert any(t["node_config"]["InstanceType"].startswith("g") for t in types.values()), "a GPU worker type"


def test_the_chosen_models_go_into_the_engines_user_config(tmp_path):
    paths = ServerPaths.at(tmp_path)
    paths.engines_file.parent.mkdir(parents=True)
    paths.engines_file.write_text(json.dumps({"engine_loaded": "xtts", "selected_model": "xtts - mine"}))
    paths.model_settings_file("xtts").parent.mkdir(parents=True)
    paths.model_settings_file("xtts").write_text(json.dumps({"settings": {"lowvram_enabled": True}}))
    choices = {engine: saved_engine_choices(paths, engine) for engine in ("piper", "vits", "xtts")}
    assert choices == {"piper": {}, "vits": {}, "xtts": {"model": "xtts - mine", "deepspeed": False, "lowvram": True}}
    prepared = embedded_config.prepare_config(SERVE_CONFIG, tmp_path, "127.0.0.1", 9999, gpus=0, saved=choices)
    user_configs = {app.name: app.deployments[0].user_config for app in prepared.applications}
    assert user_configs["xtts"] == {"model": "xtts - mine", "deepspeed": False, "lowvram": True}
    assert user_configs["vits"] == {}, "nothing saved: the replicas load the first model folder"


def test_the_kuberay_manifest_carries_serve_config_yaml():
    """rayservice.yaml's serveConfigV2 is serve_config.yaml with the shared root and an open bind
    address; a change to one without the other fails here."""
    manifest = yaml.safe_load((PROJECT / "rayservice.yaml").read_text())
    assert manifest["kind"] == "RayService"
    expected = yaml.safe_load((PROJECT / "serve_config.yaml").read_text())
    expected["http_options"]["host"] = "0.0.0.0"
    for app in expected["applications"]:
        app["args"]["root"] = "/mnt/alltalk"
    assert yaml.safe_load(manifest["spec"]["serveConfigV2"]) == expected
    ServeDeploySchema.model_validate(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__
    gpu_group = cluster["workerGroupSpecs"][0]
    assert gpu_group["minReplicas"] == 0 and gpu_group["maxReplicas"] >= 1
    assert gpu_group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def _start_env(command: str) -> dict[str, str]:
    """The NAME=value words before `ray start` in a launcher command."""
    words = shlex.split(command)
    return dict(word.split("=", 1) for word in words[:words.index("ray")])


def test_every_node_of_a_cluster_starts_ray_behind_the_default_front():
    """cluster.yaml's start commands and rayservice.yaml's containers give Ray on every node what
    embedded_proxy.node_env says Serve's default front needs (the shim at the project's path on
    that node), and, behind HAProxy, the network the replicas trust to name the client."""
    launcher = yaml.safe_load((PROJECT / "cluster.yaml").read_text())
    starts = [_start_env(command) for key in ("head_start_ray_commands", "worker_start_ray_commands")
              for command in launcher[key] if "ray start" in command]
    expected = node_env(DEFAULT_PROXY, Path("/home/ubuntu/alltalk-serve") / HAPROXY_SHIM.relative_to(PROJECT))
    manifest = yaml.safe_load((PROJECT / "rayservice.yaml").read_text())["spec"]["rayClusterConfig"]
    pods = [manifest["headGroupSpec"], *manifest["workerGroupSpecs"]]
    containers = [{item["name"]: item["value"] for item in pod["template"]["spec"]["containers"][0]["env"]}
                  for pod in pods]
    in_image = node_env(DEFAULT_PROXY, Path("/home/ray/alltalk-serve") / HAPROXY_SHIM.relative_to(PROJECT))
    assert len(starts) == 2 and len(containers) == 2
    for found, wanted in [*((start, expected) for start in starts), *((env, in_image) for env in containers)]:
        assert {name: found.get(name) for name in wanted} == wanted
        assert DEFAULT_PROXY == "classic" or found.get("FORWARDED_ALLOW_IPS"), found
    workdir = next(line.split()[1] for line in (PROJECT / "Dockerfile").read_text().splitlines()
                   if line.startswith("WORKDIR"))
    assert workdir == "/home/ray/alltalk-serve"


def test_the_grafana_dashboard_queries_exactly_the_metrics_the_server_defines():
    """ops/grafana-dashboard.json stays in step with deployments/metrics.py: every ray_alltalk_*
    series it queries exists, and every metric the server defines is on the dashboard."""
    import re

    dashboard = json.loads((PROJECT / "ops" / "grafana-dashboard.json").read_text())
    queried = {re.sub(r"_(total|bucket|sum|count)$", "", name)
               for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"ray_(alltalk_[a-z_]+)", target["expr"])}
    defined = set(re.findall(r'metrics\.(?:Counter|Histogram|Gauge)\(\s*"(alltalk_[a-z_]+)"',
                             (PROJECT / "deployments" / "metrics.py").read_text()))
    assert len(defined) >= 10
    assert queried == defined
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]


def test_a_batching_engine_must_be_handed_at_least_its_batch(tmp_path):
    """XTTS batches the requests Serve hands a replica at once: a max_ongoing_requests below
    max_batch would leave the batch never full, so the configuration is refused with both numbers."""
    xtts = next(app for app in SERVE_CONFIG["applications"] if app["name"] == "xtts")
    assert xtts["args"]["max_batch"] <= xtts["deployments"][0]["max_ongoing_requests"]
    config = json.loads(json.dumps(SERVE_CONFIG))
    next(app for app in config["applications"] if app["name"] == "xtts")["deployments"][0]["max_ongoing_requests"] = 4
    with pytest.raises(ValueError, match=r"max_ongoing_requests \(4\) is below the engine's max_batch \(16\)"):
        embedded_config.prepare_config(config, tmp_path, "127.0.0.1", 9999, gpus=0)

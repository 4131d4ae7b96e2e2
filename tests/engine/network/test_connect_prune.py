"""Networks of stopped containers: `network connect` and `disconnect` before start, as in Docker 20.10.

The tests share test_network's private store, default bridge and subnet
pool. Each removes the containers and networks it makes, even after a failure.
"""

import json
import time

import pytest

from tests.engine.network.test_network import layerlab, net_env, pytestmark  # noqa: F401 (fixture, skip mark)


@pytest.fixture
def cleanup(net_env):
    """Lists of containers and networks to remove after the test, whatever happened."""
    to_remove = {"containers": [], "networks": []}
    yield to_remove
    for container in to_remove["containers"]:
        layerlab(net_env, "rm", "-f", container, check=False)
    if to_remove["containers"]:
        time.sleep(0.5)  # monitors tear down after their container dies
    for network in to_remove["networks"]:
        layerlab(net_env, "network", "rm", network, check=False)


def networks_of(env, container):
    return json.loads(layerlab(env, "inspect", container).stdout)[0]["NetworkSettings"]["Networks"]


def addresses(env, container):
    """Return {interface: "address/prefix"} inside a running container."""
    output = layerlab(env, "exec", container, "ip", "-4", "-o", "addr").stdout
    return {line.split()[1]: line.split()[3] for line in output.splitlines() if line.split()[1] != "lo"}


def create_networks(env, cleanup, *names):
    for name in names:
        layerlab(env, "network", "create", name)
        cleanup["networks"].append(name)


def test_connect_before_start(net_env, cleanup):
    create_networks(net_env, cleanup, "pair-a", "pair-b")
    cleanup["containers"] += ["pair-first", "pair-second"]
    layerlab(net_env, "create", "--name", "pair-first", "--network", "pair-a", "busybox", "sleep", "300")
    layerlab(net_env, "network", "connect", "pair-b", "pair-first")

    before_start = networks_of(net_env, "pair-first")
    peers_before_start = json.loads(layerlab(net_env, "network", "inspect", "pair-b").stdout)[0]["Containers"]
    layerlab(net_env, "start", "pair-first")
    inside = addresses(net_env, "pair-first")
    route = layerlab(net_env, "exec", "pair-first", "ip", "route").stdout
    after_start = networks_of(net_env, "pair-first")
    reached = layerlab(net_env, "run", "--name", "pair-second", "--network", "pair-b", "busybox", "sh", "-c",
                       "ping -c1 -W2 pair-first")

    assert list(before_start) == ["pair-a", "pair-b"]
    assert before_start["pair-a"]["IPAddress"] == ""
    assert before_start["pair-b"]["IPAddress"] == ""
    assert peers_before_start == {}
    assert sorted(inside) == ["eth0", "eth1"]
    assert inside["eth0"] == f"{after_start['pair-a']['IPAddress']}/24"
    assert inside["eth1"] == f"{after_start['pair-b']['IPAddress']}/24"
    assert "default via" in route
    assert f"default via {after_start['pair-a']['Gateway']} dev eth0" in route
    assert f"PING pair-first ({after_start['pair-b']['IPAddress']})" in reached.stdout
    assert "1 packets received" in reached.stdout


def test_connect_running_survives_restart(net_env, cleanup):
    create_networks(net_env, cleanup, "again-a", "again-b")
    cleanup["containers"].append("again-c")
    layerlab(net_env, "run", "-d", "--name", "again-c", "--network", "again-a", "busybox", "sleep", "300")
    layerlab(net_env, "network", "connect", "again-b", "again-c")
    assert sorted(addresses(net_env, "again-c")) == ["eth0", "eth1"]

    layerlab(net_env, "stop", "-t", "0", "again-c")
    stopped = networks_of(net_env, "again-c")
    layerlab(net_env, "start", "again-c")
    restarted = networks_of(net_env, "again-c")

    assert list(stopped) == ["again-a", "again-b"]
    assert sorted(addresses(net_env, "again-c")) == ["eth0", "eth1"]
    assert restarted["again-b"]["IPAddress"] != ""


def test_disconnect_stopped_container(net_env, cleanup):
    create_networks(net_env, cleanup, "cut-a", "cut-b")
    cleanup["containers"].append("cut-c")
    layerlab(net_env, "create", "--name", "cut-c", "--network", "cut-a", "busybox", "sleep", "300")
    layerlab(net_env, "network", "connect", "cut-b", "cut-c")

    layerlab(net_env, "network", "disconnect", "cut-b", "cut-c")
    again = layerlab(net_env, "network", "disconnect", "cut-b", "cut-c", check=False)
    primary = layerlab(net_env, "network", "disconnect", "cut-a", "cut-c", check=False)
    layerlab(net_env, "start", "cut-c")

    assert list(networks_of(net_env, "cut-c")) == ["cut-a"]
    assert again.returncode != 0
    assert "container cut-c is not connected to network cut-b" in again.stderr
    assert primary.returncode != 0
    assert "from cut-a, its network mode (--network)" in primary.stderr
    assert sorted(addresses(net_env, "cut-c")) == ["eth0"]
    assert layerlab(net_env, "ps", "--format", "{{.Networks}}", "--filter", "name=cut-c").stdout == "cut-a\n"


def test_connect_rejects_bad_input(net_env, cleanup):
    create_networks(net_env, cleanup, "bad-a")
    cleanup["containers"] += ["bad-c", "bad-host"]
    layerlab(net_env, "create", "--name", "bad-c", "--network", "bad-a", "busybox", "true")
    layerlab(net_env, "create", "--name", "bad-host", "--network", "host", "busybox", "true")

    to_host = layerlab(net_env, "network", "connect", "host", "bad-c", check=False)
    to_missing = layerlab(net_env, "network", "connect", "no-such-net", "bad-c", check=False)
    twice = layerlab(net_env, "network", "connect", "bad-a", "bad-c", check=False)
    from_host = layerlab(net_env, "network", "connect", "bad-a", "bad-host", check=False)

    for result in (to_host, to_missing, twice, from_host):
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
    assert "host and none are network modes" in to_host.stderr
    assert "network no-such-net not found" in to_missing.stderr
    assert "container bad-c is already connected to network bad-a" in twice.stderr
    assert "uses network mode host" in from_host.stderr


def test_start_without_connected_network(net_env, cleanup):
    create_networks(net_env, cleanup, "gone-a", "gone-b")
    cleanup["containers"].append("gone-c")
    layerlab(net_env, "create", "--name", "gone-c", "--network", "gone-a", "busybox", "sleep", "300")
    layerlab(net_env, "network", "connect", "gone-b", "gone-c")
    layerlab(net_env, "network", "rm", "gone-b")

    failed = layerlab(net_env, "start", "gone-c", check=False)
    time.sleep(0.5)
    endpoints_after_failure = json.loads(layerlab(net_env, "network", "inspect", "gone-a").stdout)[0]["Containers"]
    layerlab(net_env, "network", "disconnect", "gone-b", "gone-c")
    layerlab(net_env, "start", "gone-c")

    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr
    assert "network gone-b not found" in failed.stderr
    assert "layerlab network disconnect gone-b gone-c" in failed.stderr
    assert endpoints_after_failure == {}
    assert sorted(addresses(net_env, "gone-c")) == ["eth0"]

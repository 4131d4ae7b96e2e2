"""Networks of stopped containers and the network part of `network prune` and `system prune`, as in Docker 20.10.

The tests share test_network's private store, default bridge and subnet
pool. Each removes the containers and networks it makes, even after a failure.
"""

import json
import subprocess
import sys
import time

import pytest

from layerlab.engine.network import iptables
from tests.engine.network.test_network import layerlab, net_env, pytestmark  # noqa: F401 (fixture, skip mark)

SYSTEM_PROMPT = (
    "WARNING! This will remove:\n"
    "  - all stopped containers\n"
    "  - all networks not used by at least one container\n"
    "  - all dangling images\n"
    "  - all build cache\n"
    "\n"
    "Are you sure you want to continue? [y/N] "
)
NETWORK_PROMPT = (
    "WARNING! This will remove all custom networks not used by at least one container.\n"
    "Are you sure you want to continue? [y/N] "
)


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


def answer(env, text, *args):
    return subprocess.run([sys.executable, "-m", "layerlab", *args], env=env, input=text, capture_output=True,
                          text=True, timeout=60)


def network_names(env):
    listed = layerlab(env, "network", "ls").stdout
    return {line.split()[1] for line in listed.splitlines()[1:]}


def bridge_of(env, network):
    document = json.loads(layerlab(env, "network", "inspect", network).stdout)[0]
    return document["Options"]["com.docker.network.bridge.name"]


def link_exists(name):
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def bridge_rules(bridge):
    return [comment for _, _, comment in iptables.tagged_rules()
            if comment.startswith(iptables.bridge_comment(bridge) + " ")]


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


def test_network_prune_keeps_used_networks(net_env, cleanup):
    create_networks(net_env, cleanup, "prune-idle1", "prune-idle2", "prune-stopped", "prune-running")
    cleanup["containers"] += ["prune-c1", "prune-c2"]
    layerlab(net_env, "create", "--name", "prune-c1", "--network", "prune-stopped", "busybox", "true")
    layerlab(net_env, "run", "-d", "--name", "prune-c2", "--network", "prune-running", "busybox", "sleep", "300")
    layerlab(net_env, "run", "--rm", "busybox", "true")  # makes the record of the predefined `bridge`

    declined = answer(net_env, "n\n", "network", "prune")
    names_after_decline = network_names(net_env)
    pruned = layerlab(net_env, "network", "prune", "-f")
    names = network_names(net_env)

    assert declined.stdout == NETWORK_PROMPT + "\n"
    assert {"prune-idle1", "prune-idle2"} <= names_after_decline
    assert pruned.stdout == "Deleted Networks:\nprune-idle1\nprune-idle2\n\n"
    assert {"bridge", "host", "none", "prune-stopped", "prune-running"} <= names
    assert not {"prune-idle1", "prune-idle2"} & names


def test_network_prune_keeps_connected_network(net_env, cleanup):
    create_networks(net_env, cleanup, "prune-main", "prune-extra")
    cleanup["containers"].append("prune-c3")
    layerlab(net_env, "create", "--name", "prune-c3", "--network", "prune-main", "busybox", "true")
    layerlab(net_env, "network", "connect", "prune-extra", "prune-c3")

    pruned = layerlab(net_env, "network", "prune", "-f")

    assert pruned.stdout == ""
    assert {"prune-main", "prune-extra"} <= network_names(net_env)


def test_system_prune_prompt_names_networks(net_env):
    declined = answer(net_env, "n\n", "system", "prune")

    assert declined.stdout == SYSTEM_PROMPT + "\n"


def test_prune_prompts_match_docker(net_env, dockerd):
    docker_network = dockerd.docker("network", "prune", input="n\n")
    docker_system = dockerd.docker("system", "prune", input="n\n")
    network = answer(net_env, "n\n", "network", "prune")
    system = answer(net_env, "n\n", "system", "prune")

    assert network.stdout.rstrip("\n") == docker_network.stdout.rstrip("\n")
    # The build cache line differs: Docker's default prune keeps cache that is in use, layerlab's removes it all.
    assert system.stdout.splitlines()[:4] == docker_system.stdout.splitlines()[:4]


def test_system_prune_removes_networks(net_env, cleanup):
    create_networks(net_env, cleanup, "sys-idle", "sys-stopped", "sys-running")
    cleanup["containers"] += ["sys-c1", "sys-c2"]
    # A container that ran on sys-idle leaves its bridge and NAT rules behind until the network goes.
    layerlab(net_env, "run", "--rm", "--network", "sys-idle", "busybox", "true")
    idle_bridge = bridge_of(net_env, "sys-idle")
    created = layerlab(net_env, "create", "--name", "sys-c1", "--network", "sys-stopped", "busybox", "true")
    layerlab(net_env, "run", "-d", "--name", "sys-c2", "--network", "sys-running", "busybox", "sleep", "300")
    layerlab(net_env, "run", "--rm", "busybox", "true")
    assert link_exists(idle_bridge)
    assert bridge_rules(idle_bridge)

    pruned = layerlab(net_env, "system", "prune", "-f")
    names = network_names(net_env)

    # Docker prunes containers first, so a network whose only container was stopped goes too.
    expected = (f"Deleted Containers:\n{created.stdout.strip()}\n\n"
                "Deleted Networks:\nsys-idle\nsys-stopped\n\nTotal reclaimed space: ")
    assert pruned.stdout.startswith(expected), pruned.stdout
    assert {"bridge", "host", "none", "sys-running"} <= names
    assert not {"sys-idle", "sys-stopped"} & names
    assert not link_exists(idle_bridge)
    assert bridge_rules(idle_bridge) == []


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
    assert "No such network: no-such-net" in to_missing.stderr
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


def test_system_prune_releases_idle_default_bridge(net_env, cleanup):
    layerlab(net_env, "run", "--rm", "busybox", "true")
    bridge = bridge_of(net_env, "bridge")
    assert link_exists(bridge)
    assert bridge_rules(bridge)

    layerlab(net_env, "system", "prune", "-f")
    released = not link_exists(bridge) and bridge_rules(bridge) == []
    rerun = layerlab(net_env, "run", "--rm", "busybox", "true")

    assert released
    assert rerun.returncode == 0
    assert link_exists(bridge)
    assert bridge_rules(bridge)


def test_system_prune_keeps_default_bridge_in_use(net_env, cleanup):
    cleanup["containers"].append("keeps-bridge")
    layerlab(net_env, "run", "-d", "--name", "keeps-bridge", "busybox", "sleep", "300")
    bridge = bridge_of(net_env, "bridge")

    layerlab(net_env, "system", "prune", "-f")

    assert link_exists(bridge)
    assert bridge_rules(bridge)

"""Bridge networks end to end: addresses, routes, peers by name, published ports and crash cleanup.

The tests run the CLI as root against a private store, with their own
default bridge and subnet pool, and talk only to 127.0.0.1 and to the
containers they start. Every link, rule and container they make is removed
at the end, even after a failure.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from layerlab.engine.network import iptables
from layerlab.engine.network.ports import PortBinding, parse_publish
from layerlab.engine.network.subnets import choose_subnet

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("iptables-save") is None,
    reason="bridge networks need root and iptables",
)

TEST_BRIDGE = f"lltest{os.getpid() % 100000}"
TEST_POOL = "10.231.0.0/16"


@pytest.fixture(scope="module")
def net_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("netstore")
    env = dict(os.environ, LAYERLAB_ROOT=str(root), LAYERLAB_DEFAULT_BRIDGE=TEST_BRIDGE,
               LAYERLAB_SUBNET_POOL=TEST_POOL)
    subprocess.run([sys.executable, "-m", "layerlab", "bootstrap", "busybox"], env=env, check=True,
                   capture_output=True, timeout=600)
    try:
        yield env
    finally:
        _clean_up(env, str(root))


def _clean_up(env, root):
    layerlab = [sys.executable, "-m", "layerlab"]
    listed = subprocess.run(layerlab + ["ps", "-aq", "--no-trunc"], env=env, capture_output=True, text=True)
    for container_id in listed.stdout.split():
        subprocess.run(layerlab + ["rm", "-f", container_id], env=env, capture_output=True)
    time.sleep(0.5)  # monitors tear down after their container dies
    subprocess.run(layerlab + ["network", "prune", "-f"], env=env, capture_output=True)
    records = os.path.join(root, "networks")
    bridges = [TEST_BRIDGE]
    for name in os.listdir(records) if os.path.isdir(records) else []:
        if name.endswith(".json"):
            with open(os.path.join(records, name)) as handle:
                bridges.append(json.load(handle)["bridge"])
    for bridge in bridges:
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
    tag = iptables.store_tag(root)
    prefixes = tuple([f"{iptables.TAG} {tag} "] + [iptables.bridge_comment(bridge) + " " for bridge in bridges])
    iptables.remove(lambda comment: comment.startswith(prefixes))


def layerlab(env, *args, check=True, timeout=60):
    result = subprocess.run([sys.executable, "-m", "layerlab", *args], env=env, capture_output=True, text=True,
                            timeout=timeout)
    if check:
        assert result.returncode == 0, f"layerlab {' '.join(args)} failed: {result.stderr}"
    return result


def store_rules(env):
    tag = iptables.store_tag(env["LAYERLAB_ROOT"])
    return [comment for _, _, comment in iptables.tagged_rules() if comment.startswith(f"{iptables.TAG} {tag} ")]


def test_none_has_only_loopback(net_env):
    result = layerlab(net_env, "run", "--rm", "--network", "none", "busybox", "cat", "/proc/net/dev")
    interfaces = [line.split(":")[0].strip() for line in result.stdout.splitlines()[2:]]
    assert interfaces == ["lo"]


def test_none_skips_pyroute2_import(net_env):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "layerlab", "run", "--rm", "--network", "none",
                             "busybox", "true"], env=net_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pyroute2" not in result.stderr
    assert "layerlab.engine.network" not in result.stderr


def test_bridge_gives_eth0_and_route(net_env):
    result = layerlab(net_env, "run", "--rm", "busybox", "sh", "-c", "ip -4 -o addr show eth0; ip route")
    assert "inet 10.231." in result.stdout
    assert "default via 10.231." in result.stdout
    assert "dev eth0" in result.stdout


def test_bridge_run_releases_address(net_env):
    layerlab(net_env, "run", "--rm", "busybox", "true")
    document = json.loads(layerlab(net_env, "network", "inspect", "bridge").stdout)[0]
    assert document["Containers"] == {}
    assert document["Options"]["com.docker.network.bridge.name"] == TEST_BRIDGE
    assert not any(" container=" in comment for comment in store_rules(net_env))


def test_peers_reach_each_other_by_name(net_env):
    layerlab(net_env, "network", "create", "peers")
    layerlab(net_env, "run", "-d", "--name", "peer-server", "--network", "peers", "busybox", "sh", "-c",
             "mkdir -p /w && echo from-peer > /w/i && httpd -f -p 80 -h /w")
    try:
        result = layerlab(net_env, "run", "--rm", "--network", "peers", "busybox", "sh", "-c",
                          "cat /etc/hosts; ping -c1 -W2 peer-server && printf 'GET /i HTTP/1.0\\r\\n\\r\\n' | nc -w 3 peer-server 80")
        assert "peer-server" in result.stdout
        assert "1 packets received" in result.stdout
        assert "from-peer" in result.stdout
    finally:
        layerlab(net_env, "rm", "-f", "peer-server", check=False)
    time.sleep(0.5)
    layerlab(net_env, "network", "rm", "peers")
    assert "peers" not in layerlab(net_env, "network", "ls").stdout


def test_publish_tcp_from_loopback(net_env):
    layerlab(net_env, "run", "-d", "--name", "web", "-p", "127.0.0.1:18080:80", "busybox", "sh", "-c",
             "mkdir -p /www && echo served > /www/index.html && httpd -f -p 80 -h /www")
    try:
        body = _fetch("http://127.0.0.1:18080/index.html")
        assert body == b"served\n"
        assert layerlab(net_env, "port", "web").stdout == "80/tcp -> 127.0.0.1:18080\n"
        assert "127.0.0.1:18080->80/tcp" in layerlab(net_env, "ps").stdout
    finally:
        layerlab(net_env, "rm", "-f", "web", check=False)
    time.sleep(0.5)
    assert not any(" container=" in comment for comment in store_rules(net_env))


def test_publish_udp(net_env):
    # busybox has no UDP server, so the datagrams are counted by the container's kernel:
    # with nothing listening they raise the Udp NoPorts counter of its network namespace.
    layerlab(net_env, "run", "-d", "--name", "udp", "-p", "18053:5353/udp", "busybox", "sleep", "60")
    try:
        before = _udp_no_ports(net_env, "udp")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            for _ in range(3):
                client.sendto(b"datagram", ("127.0.0.1", 18053))
        time.sleep(0.3)
        after = _udp_no_ports(net_env, "udp")
        assert after - before >= 3
    finally:
        layerlab(net_env, "rm", "-f", "udp", check=False)


def _udp_no_ports(env, container):
    lines = [line.split() for line in layerlab(env, "exec", container, "cat", "/proc/net/snmp").stdout.splitlines()
             if line.startswith("Udp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("NoPorts")])


def test_publish_all_exposed(net_env, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\nEXPOSE 80\n")
    layerlab(net_env, "build", "-t", "exposed", str(tmp_path))
    layerlab(net_env, "run", "-d", "--name", "all", "-P", "exposed", "sh", "-c",
             "mkdir -p /www && echo any > /www/index.html && httpd -f -p 80 -h /www")
    try:
        line = layerlab(net_env, "port", "all").stdout.strip()
        assert line.startswith("80/tcp -> 0.0.0.0:")
        host_port = int(line.rsplit(":", 1)[1])
        assert _fetch(f"http://127.0.0.1:{host_port}/index.html") == b"any\n"
    finally:
        layerlab(net_env, "rm", "-f", "all", check=False)


@pytest.mark.parametrize("command", [["network", "prune", "-f"], ["fsck", "--repair"]])
def test_cleanup_after_launcher_killed(net_env, command):
    launcher = subprocess.Popen([sys.executable, "-m", "layerlab", "run", "--name", "crash", "-p", "18081:80",
                                 "busybox", "sleep", "60"], env=net_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not any(" container=" in comment for comment in store_rules(net_env)):
            assert time.monotonic() < deadline, "the container's port rules never appeared"
            time.sleep(0.1)
    finally:
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
    time.sleep(0.5)  # the container dies with its launcher (PR_SET_PDEATHSIG)

    layerlab(net_env, *command, check=False)
    layerlab(net_env, "rm", "-f", "crash", check=False)

    assert not any(" container=" in comment for comment in store_rules(net_env))
    document = json.loads(layerlab(net_env, "network", "inspect", "bridge").stdout)[0]
    assert document["Containers"] == {}
    links = subprocess.run(["ip", "-o", "link", "show", "master", TEST_BRIDGE], capture_output=True, text=True).stdout
    assert links == ""


def _kill_monitor(env, name):
    document = json.loads(layerlab(env, "inspect", name).stdout)[0]
    container_folder = os.path.join(env["LAYERLAB_ROOT"], "containers", document["Id"])
    with open(os.path.join(container_folder, "monitor.pid")) as handle:
        os.kill(int(handle.read()), signal.SIGKILL)
    time.sleep(0.3)
    return document


def _serve(env, name, port, body):
    layerlab(env, "run", "-d", "--name", name, "-p", f"{port}:80", "busybox", "sh", "-c",
             f"mkdir -p /www && echo {body} > /www/index.html && httpd -f -p 80 -h /www")


def test_rm_releases_orphaned_network(net_env):
    _serve(net_env, "orphan", 18487, "first")
    try:
        document = _kill_monitor(net_env, "orphan")
        layerlab(net_env, "stop", "-t", "1", "orphan")
        layerlab(net_env, "rm", "orphan")
    finally:
        layerlab(net_env, "rm", "-f", "orphan", check=False)

    assert not any(" container=" in comment for comment in store_rules(net_env))
    bridge = json.loads(layerlab(net_env, "network", "inspect", "bridge").stdout)[0]
    assert document["Id"] not in bridge["Containers"]
    links = subprocess.run(["ip", "-o", "link", "show", "master", TEST_BRIDGE], capture_output=True, text=True).stdout
    assert links == ""


def test_publish_clears_dead_rules(net_env):
    _serve(net_env, "dead", 18488, "old")
    try:
        document = _kill_monitor(net_env, "dead")
        os.kill(document["State"]["Pid"], signal.SIGKILL)
        time.sleep(0.3)
        # Nothing released the dead container's network; the next run on its port must.
        _serve(net_env, "fresh", 18488, "new")
        body = _fetch("http://127.0.0.1:18488/index.html")
        rules = store_rules(net_env)
    finally:
        layerlab(net_env, "rm", "-f", "dead", "fresh", check=False)

    assert body == b"new\n"
    assert not any(f"container={document['Id'][:12]}" in comment for comment in rules)


def test_network_ls_columns(net_env):
    output = layerlab(net_env, "network", "ls").stdout.splitlines()
    assert output[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    names = [line.split()[1] for line in output[1:]]
    assert {"bridge", "host", "none"} <= set(names)


def test_parse_publish_forms():
    assert parse_publish("8080:80") == [PortBinding(80, "tcp", "0.0.0.0", 8080)]
    assert parse_publish("127.0.0.1:53:53/udp") == [PortBinding(53, "udp", "127.0.0.1", 53)]
    assert parse_publish("80") == [PortBinding(80, "tcp", "0.0.0.0", 0)]
    assert parse_publish("8000-8001:80-81") == [PortBinding(80, "tcp", "0.0.0.0", 8000),
                                                PortBinding(81, "tcp", "0.0.0.0", 8001)]
    assert str(parse_publish("8080:80")[0]) == "0.0.0.0:8080->80/tcp"


@pytest.mark.parametrize("text", ["80/sctp", "x:80", "1.2.3:80:80", "0:80", "8000-8002:80-81"])
def test_parse_publish_rejects(text):
    from layerlab.engine.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        parse_publish(text)


def test_subnet_avoids_taken():
    assert choose_subnet(["10.232.0.0/24", "10.232.1.0/24"], ["10.232.0.0/24"]) == "10.232.1.0/24"


def _fetch(url):
    last_error = None
    for _ in range(30):
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError as error:
            last_error = error
            time.sleep(0.2)
    raise AssertionError(f"GET {url} failed: {last_error}")


def test_bridge_inside_running_event_loop(net_env):
    # The Jupyter kernel calls the engine from inside a running asyncio loop,
    # where pyroute2's synchronous API cannot start a loop of its own.
    script = (
        "import asyncio\n"
        "from layerlab.engine.cli.main import main\n"
        "async def run():\n"
        "    return main(['run', '--rm', 'busybox', 'sh', '-c', 'ip -4 addr show eth0 | grep -c inet'])\n"
        "raise SystemExit(asyncio.run(run()))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=net_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_publish_rejects_port_in_use(net_env):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 15999))
        server.listen(1)
        detached = layerlab(net_env, "run", "-d", "--name", "hijack", "-p", "15999:80", "busybox", "sleep", "30",
                            check=False)
        foreground = layerlab(net_env, "run", "--rm", "-p", "127.0.0.1:15999:80", "busybox", "true", check=False)
    layerlab(net_env, "rm", "-f", "hijack", check=False)

    assert detached.returncode == 125
    assert "Bind for 0.0.0.0:15999 failed: port is already allocated" in detached.stderr
    assert foreground.returncode == 125
    assert "Bind for 127.0.0.1:15999 failed: port is already allocated" in foreground.stderr
    assert not any(" container=" in comment for comment in store_rules(net_env))


def test_publish_holds_host_port(net_env):
    layerlab(net_env, "run", "-d", "--name", "holder", "-p", "18090:80", "busybox", "sleep", "30")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
            with pytest.raises(OSError):
                other.bind(("0.0.0.0", 18090))
    finally:
        layerlab(net_env, "rm", "-f", "holder", check=False)
    time.sleep(0.5)  # the monitor closes the socket at teardown
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("0.0.0.0", 18090))


def test_publish_rejects_other_store_rule(net_env):
    # A DNAT rule of another store (another tag) forwards the port, though no socket holds it.
    foreign = iptables.Rule("nat", "OUTPUT", ("-d", "127.0.0.1/32", "-p", "tcp", "-m", "tcp", "--dport", "18092"),
                            ("-j", "DNAT", "--to-destination", "10.231.255.254:80"),
                            f"{iptables.TAG} 00000000 container=000000000000 0.0.0.0:18092/tcp")
    iptables.ensure([foreign])
    try:
        result = layerlab(net_env, "run", "--rm", "-p", "18092:80", "busybox", "true", check=False)
    finally:
        iptables.remove(lambda comment: comment == foreign.comment)

    assert result.returncode == 125
    assert "Bind for 0.0.0.0:18092 failed: port is already allocated" in result.stderr
    assert "another layerlab store" in result.stderr


def test_ps_lists_exposed_ports(net_env, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\nEXPOSE 80 443/tcp\n")
    layerlab(net_env, "build", "-t", "two-exposed", str(tmp_path))
    layerlab(net_env, "run", "-d", "--name", "exposed-only", "two-exposed", "sleep", "30")
    layerlab(net_env, "run", "-d", "--name", "one-published", "-p", "18093:80", "two-exposed", "sleep", "30")
    try:
        rows = layerlab(net_env, "ps", "--format", "{{.Names}} {{.Ports}}").stdout.splitlines()
    finally:
        layerlab(net_env, "rm", "-f", "exposed-only", "one-published", check=False)

    assert "exposed-only 80/tcp, 443/tcp" in rows
    assert "one-published 0.0.0.0:18093->80/tcp, 443/tcp" in rows


def test_default_bridge_per_store(monkeypatch, tmp_path):
    from layerlab.engine.network.records import default_bridge_name

    monkeypatch.delenv("LAYERLAB_DEFAULT_BRIDGE", raising=False)
    first = default_bridge_name(str(tmp_path / "a"))
    second = default_bridge_name(str(tmp_path / "b"))

    assert default_bridge_name("/var/lib/layerlab") == "layerlab0"
    assert first.startswith("ll-")
    assert first != second
    assert len(first) <= 15  # IFNAMSIZ - 1


def test_subnets_differ_across_stores(tmp_path):
    from layerlab.engine.network.records import NetworkStore

    # Subnet claims are host-wide and outlive a test until their store is gone, so each
    # run takes its own pair and deletes its stores at the end.
    octet = 20 + os.getpid() % 200
    pool = [f"10.233.{octet}.0/24", f"10.233.{octet + 1}.0/24"]
    try:
        first = NetworkStore(str(tmp_path / "a"), str(tmp_path / "a" / "locks"), pool=pool).default()
        second = NetworkStore(str(tmp_path / "b"), str(tmp_path / "b" / "locks"), pool=pool).default()

        assert first.subnet != second.subnet
        assert first.bridge != second.bridge
    finally:
        shutil.rmtree(tmp_path / "a", ignore_errors=True)
        shutil.rmtree(tmp_path / "b", ignore_errors=True)


def test_prune_deletes_idle_default_bridge(net_env):
    layerlab(net_env, "run", "--rm", "busybox", "true")
    assert subprocess.run(["ip", "link", "show", TEST_BRIDGE], capture_output=True).returncode == 0

    layerlab(net_env, "network", "prune", "-f")

    assert subprocess.run(["ip", "link", "show", TEST_BRIDGE], capture_output=True).returncode != 0
    assert not any(comment.startswith(iptables.bridge_comment(TEST_BRIDGE) + " ")
                   for _, _, comment in iptables.tagged_rules())

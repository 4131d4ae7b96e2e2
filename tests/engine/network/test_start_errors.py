"""A container that fails to start on a bridge network reports its own error, not the handshake's."""

import pytest

from tests.engine.network.test_network import layerlab, net_env, pytestmark  # noqa: F401 (fixture, skip mark)


@pytest.mark.parametrize("detach", [[], ["-d"]])
def test_unknown_user_error_on_bridge(net_env, detach):
    result = layerlab(net_env, "run", *detach, "--rm", "-u", "nosuchuser", "busybox", "id", check=False)

    assert result.returncode == 125
    assert "Broken pipe" not in result.stderr
    assert "unable to find user nosuchuser: no matching entries in passwd file" in result.stderr


def test_bad_workdir_error_on_bridge(net_env):
    result = layerlab(net_env, "run", "--rm", "-w", "/etc/passwd", "busybox", "pwd", check=False)

    assert result.returncode == 125
    assert "Broken pipe" not in result.stderr
    assert "cannot create working directory /etc/passwd" in result.stderr


def test_start_error_releases_address(net_env):
    show_address = ["run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0"]
    before = layerlab(net_env, *show_address).stdout.split()[3]
    for _ in range(3):
        layerlab(net_env, "run", "--rm", "-u", "nosuchuser", "busybox", "id", check=False)

    after = layerlab(net_env, *show_address).stdout.split()[3]

    assert after == before

"""Capabilities: Docker's default set, --cap-add, --cap-drop and non-root users."""

import pytest

from layerlab.engine.errors import InvalidArgumentError
from layerlab.engine.runtime.capabilities import DEFAULT_CAPABILITIES, capability_mask, capability_set

DOCKER_DEFAULT_MASK = "00000000a80425fb"


def capability_lines(output):
    return dict(line.split(":\t") for line in output.splitlines() if line.startswith("Cap"))


def test_default_set_matches_docker(run):
    code, output = run("grep", "^Cap", "/proc/self/status")
    caps = capability_lines(output)
    assert code == 0
    assert caps["CapEff"] == DOCKER_DEFAULT_MASK
    assert caps["CapPrm"] == DOCKER_DEFAULT_MASK
    assert caps["CapBnd"] == DOCKER_DEFAULT_MASK
    assert caps["CapInh"] == "0000000000000000"
    assert caps["CapAmb"] == "0000000000000000"


def test_non_root_user_has_no_effective_caps(run):
    code, output = run("grep", "^Cap", "/proc/self/status", user="app")
    caps = capability_lines(output)
    assert caps["CapEff"] == "0000000000000000"
    assert caps["CapPrm"] == "0000000000000000"
    assert caps["CapBnd"] == DOCKER_DEFAULT_MASK


def test_cap_drop_all(run):
    code, output = run("grep", "^Cap", "/proc/self/status", cap_drop=("ALL",))
    caps = capability_lines(output)
    assert caps["CapEff"] == "0000000000000000"
    assert caps["CapBnd"] == "0000000000000000"


def test_cap_drop_chown_denies_chown(run):
    code, _ = run("chown", "1000", "/etc/motd", cap_drop=("CHOWN",))
    assert code != 0


def test_cap_add_sys_admin_allows_mount(run):
    code, _ = run("mount", "-t", "tmpfs", "tmpfs", "/tmp", cap_add=("SYS_ADMIN",))
    assert code == 0


def test_no_new_privileges(run):
    code, output = run("grep", "NoNewPrivs", "/proc/self/status", no_new_privileges=True)
    assert output.split() == ["NoNewPrivs:", "1"]


def test_default_mask_value():
    assert capability_mask(DEFAULT_CAPABILITIES) == int(DOCKER_DEFAULT_MASK, 16)


@pytest.mark.parametrize(
    "cap_add, cap_drop, expected_added, expected_removed",
    [
        (("NET_ADMIN",), (), {"NET_ADMIN"}, set()),
        (("cap_net_admin",), (), {"NET_ADMIN"}, set()),
        ((), ("CHOWN", "KILL"), set(), {"CHOWN", "KILL"}),
        (("KILL",), ("KILL",), set(), set()),
    ],
)
def test_capability_set_add_and_drop(cap_add, cap_drop, expected_added, expected_removed):
    result = capability_set(cap_add, cap_drop)
    assert result == (set(DEFAULT_CAPABILITIES) | expected_added) - expected_removed


def test_capability_set_drop_all_keeps_added():
    assert capability_set(("NET_ADMIN",), ("ALL",)) == {"NET_ADMIN"}


def test_capability_set_add_all_minus_dropped():
    result = capability_set(("ALL",), ("SYS_ADMIN",))
    assert "SYS_ADMIN" not in result
    assert "SYS_MODULE" in result


def test_capability_set_unknown_name():
    with pytest.raises(InvalidArgumentError, match="unknown capability: 'NOPE'"):
        capability_set(("NOPE",))

"""Resolving ProcessSpec.user against /etc/passwd and /etc/group, and Docker's default environment."""

import pytest

from layerlab.engine.errors import ContainerError
from layerlab.engine.runtime.users import ExecUser, resolve_user, user_env

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n# comment\nbroken line\n"
GROUP = "root:x:0:\nwheel:x:10:root,app\nstaff:x:50:app\napp:x:1000:\n"


@pytest.fixture
def etc(tmp_path):
    passwd = tmp_path / "passwd"
    group = tmp_path / "group"
    passwd.write_text(PASSWD)
    group.write_text(GROUP)
    return str(passwd), str(group)


@pytest.mark.parametrize(
    "user, expected",
    [
        ("", ExecUser(0, 0, [0, 10], "/root")),
        ("root", ExecUser(0, 0, [0, 10], "/root")),
        ("app", ExecUser(1000, 1000, [1000, 10, 50], "/home/app")),
        ("1000", ExecUser(1000, 1000, [1000, 10, 50], "/home/app")),
        ("app:staff", ExecUser(1000, 50, [50], "/home/app")),
        ("1000:1000", ExecUser(1000, 1000, [1000], "/home/app")),
        ("4242", ExecUser(4242, 0, [0], "/")),
        ("4242:77", ExecUser(4242, 77, [77], "/")),
    ],
)
def test_resolve_user(etc, user, expected):
    assert resolve_user(user, *etc) == expected


def test_unknown_user(etc):
    with pytest.raises(ContainerError) as raised:
        resolve_user("ghost", *etc)
    assert str(raised.value) == "unable to find user ghost: no matching entries in passwd file"


def test_unknown_group(etc):
    with pytest.raises(ContainerError) as raised:
        resolve_user("app:ghosts", *etc)
    assert str(raised.value) == "unable to find group ghosts: no matching entries in group file"


def test_missing_passwd_file(tmp_path):
    missing = str(tmp_path / "missing")
    assert resolve_user("", missing, missing) == ExecUser(0, 0, [0], "/root")
    assert resolve_user("33:33", missing, missing) == ExecUser(33, 33, [33], "/")


def test_user_env_adds_defaults():
    env = user_env(["FOO=1"], ExecUser(1000, 1000, [1000], "/home/app"), "box")
    assert env == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOSTNAME=box",
        "FOO=1",
        "HOME=/home/app",
    ]


def test_user_env_keeps_given_values():
    env = ["HOME=/", "PATH=/bin", "HOSTNAME=other"]
    assert user_env(env, ExecUser(0, 0, [0], "/root"), "box") == ["PATH=/bin", "HOSTNAME=other", "HOME=/"]

"""Rootless layerlab: the CLI run by an ordinary user, with its store under $XDG_DATA_HOME/layerlab.

The tests run as root and switch to the user `tester` (made with useradd
when missing) with runuser or su. pyenv's python under /root is unreadable
for that user, so its virtual environment is made with Debian's
/usr/bin/python3 and installs this checkout in editable mode. Each test
gets its own XDG_DATA_HOME, deleted afterwards as root, because files that
container users created belong to subordinate ids that the user cannot
delete from outside a user namespace.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USER = "tester"
# The venv is rebuilt when it does not install this checkout. Point the
# variable elsewhere to keep one venv per checkout.
VENV = os.environ.get("LAYERLAB_ROOTLESS_VENV", "/tmp/ll-rootless-venv")
SYSTEM_PYTHON = "/usr/bin/python3"

DOCKERFILE = """\
FROM busybox
RUN mkdir /app && echo from-run > /app/run.txt
COPY hello.txt /app/
CMD ["cat", "/app/hello.txt"]
"""


def _unavailable(reason: str):
    # On CI a missing prerequisite is a broken runner, not a reason to skip.
    if os.environ.get("CI") == "true":
        pytest.fail(f"rootless tests cannot run: {reason}")
    pytest.skip(f"rootless tests need {reason}")


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        pass
    if not shutil.which("useradd"):
        _unavailable(f"useradd to create the user {USER}")
    subprocess.run(["useradd", "-m", USER], check=True)
    return pwd.getpwnam(USER)


def _venv_uses_this_checkout() -> bool:
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(os.path.join(VENV, "bin", "layerlab")):
        return False
    result = subprocess.run(
        [python, "-c", "import layerlab.engine, os; print(os.path.dirname(layerlab.engine.__file__))"],
        capture_output=True, text=True, check=False,
    )
    return result.returncode == 0 and os.path.realpath(result.stdout.strip()) == os.path.join(REPO, "engine")


def _ensure_venv() -> None:
    if not _venv_uses_this_checkout():
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", "-e", REPO], check=True)
    # The user only needs to read the venv and the checkout, so their owner stays root.
    subprocess.run(["chmod", "-R", "a+rX", VENV, REPO], check=False)


@pytest.fixture(scope="module")
def tester():
    if os.geteuid() != 0:
        pytest.skip("rootless tests switch to an ordinary user, which needs root")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        _unavailable(f"{SYSTEM_PYTHON} (Debian's python3) for a venv that an ordinary user can run")
    if not shutil.which("runuser") and not shutil.which("su"):
        _unavailable("runuser or su to switch users")
    entry = _ensure_user()
    _ensure_venv()
    return entry


@pytest.fixture
def data_home(tester):
    """Yield a fresh XDG_DATA_HOME owned by the user, whose `layerlab` folder becomes the store."""
    path = tempfile.mkdtemp(prefix="ll-rootless-", dir=tester.pw_dir)
    os.chown(path, tester.pw_uid, tester.pw_gid)
    yield path
    shutil.rmtree(path)


def as_user(tester, data_home, command: str, *, cwd: str | None = None, check: bool = True):
    """Run the shell `command` as the user, with the venv first on PATH, and return the CompletedProcess."""
    env = {
        "HOME": tester.pw_dir,
        "USER": USER,
        "LOGNAME": USER,
        "PATH": f"{VENV}/bin:/usr/bin:/bin",
        "XDG_DATA_HOME": data_home,
        "LANG": "C.UTF-8",
    }
    # Resolved with the caller's PATH, since runuser lives in /usr/sbin, which `env` leaves out.
    runuser = shutil.which("runuser")
    if runuser:
        args = [runuser, "-u", USER, "--", "/bin/sh", "-c", command]
    else:
        args = [shutil.which("su"), USER, "-s", "/bin/sh", "-c", command]
    result = subprocess.run(args, env=env, cwd=cwd or tester.pw_dir, capture_output=True, text=True, timeout=300,
                            check=False)
    if check:
        assert result.returncode == 0, f"{command!r} failed with {result.returncode}:\n{result.stdout}{result.stderr}"
    return result


def bootstrap(tester, data_home):
    as_user(tester, data_home, "layerlab bootstrap busybox")


def subordinate_start(name: str) -> int | None:
    try:
        with open("/etc/subuid") as file:
            for line in file:
                fields = line.strip().split(":")
                if len(fields) == 3 and fields[0] == name:
                    return int(fields[1])
    except OSError:
        pass
    return None


def test_store_under_xdg_data_home(tester, data_home):
    bootstrap(tester, data_home)

    store = os.path.join(data_home, "layerlab")
    assert os.path.isfile(os.path.join(store, "index.json"))
    assert os.stat(store).st_uid == tester.pw_uid


def test_run_echo(tester, data_home):
    bootstrap(tester, data_home)

    result = as_user(tester, data_home, "layerlab run --rm busybox sh -c 'echo rootless-ok'")

    assert result.stdout == "rootless-ok\n"


def test_whoami_is_root(tester, data_home):
    bootstrap(tester, data_home)

    result = as_user(tester, data_home, "layerlab run --rm busybox sh -c 'id -u; id -g'")

    assert result.stdout.split() == ["0", "0"]


def test_run_rm_leaves_no_container(tester, data_home):
    bootstrap(tester, data_home)

    as_user(tester, data_home, "layerlab run --rm busybox true")

    containers = os.path.join(data_home, "layerlab", "containers")
    assert os.listdir(containers) == []


def test_build_run_and_copy(tester, data_home):
    bootstrap(tester, data_home)
    context = tempfile.mkdtemp(prefix="context-", dir=data_home)
    with open(os.path.join(context, "Dockerfile"), "w") as file:
        file.write(DOCKERFILE)
    with open(os.path.join(context, "hello.txt"), "w") as file:
        file.write("hello-from-copy\n")
    subprocess.run(["chown", "-R", f"{tester.pw_uid}:{tester.pw_gid}", context], check=True)

    as_user(tester, data_home, "layerlab build -t rootless-build .", cwd=context)
    default_cmd = as_user(tester, data_home, "layerlab run --rm rootless-build")
    run_file = as_user(tester, data_home, "layerlab run --rm rootless-build cat /app/run.txt")
    owners = as_user(tester, data_home, "layerlab run --rm rootless-build stat -c '%u:%g %n' /app/hello.txt")

    assert default_cmd.stdout == "hello-from-copy\n"
    assert run_file.stdout == "from-run\n"
    assert owners.stdout == "0:0 /app/hello.txt\n"


def test_diff_after_rm(tester, data_home):
    bootstrap(tester, data_home)

    as_user(tester, data_home, "layerlab run --name removed busybox rm /bin/ls")
    result = as_user(tester, data_home, "layerlab diff removed")
    as_user(tester, data_home, "layerlab rm removed")

    assert result.stdout.splitlines() == ["C /bin", "D /bin/ls"]


def test_file_owners_on_host(tester, data_home):
    bootstrap(tester, data_home)

    as_user(tester, data_home,
            "layerlab run --name owners busybox sh -c 'touch /by-root /by-app; chown 1000:1000 /by-app || true'")
    inspect = as_user(tester, data_home, "layerlab inspect owners")
    upper = json.loads(inspect.stdout)[0]["GraphDriver"]["Data"]["UpperDir"]
    by_root = os.stat(os.path.join(upper, "by-root"))
    by_app = os.stat(os.path.join(upper, "by-app"))
    first = subordinate_start(USER)

    # Container root is the user itself, whatever the mapping.
    assert by_root.st_uid == tester.pw_uid
    if first is not None and shutil.which("newuidmap"):
        # Container ids 1..65536 map to the subordinate range, so container uid 1000 is host uid first + 999.
        assert by_app.st_uid == first + 999
    else:
        # With only id 0 mapped, the chown fails and the user stays the owner.
        assert by_app.st_uid == tester.pw_uid


def test_exec_and_cp_running(tester, data_home):
    bootstrap(tester, data_home)
    source = os.path.join(data_home, "from-host")
    with open(source, "w") as file:
        file.write("copied-in\n")
    os.chown(source, tester.pw_uid, tester.pw_gid)

    as_user(tester, data_home, "layerlab run -d --name live --network none busybox sleep 100")
    try:
        hostname = as_user(tester, data_home, "layerlab exec live cat /etc/hostname")
        nobody = as_user(tester, data_home, "layerlab exec -u nobody live id -u", check=False)
        copied = as_user(tester, data_home, f"layerlab cp {source} live:/tmp/ && "
                                            "layerlab exec live stat -c '%u:%g %s' /tmp/from-host")
    finally:
        as_user(tester, data_home, "layerlab rm -f live", check=False)

    assert hostname.stdout.strip() != ""
    assert copied.stdout == "0:0 10\n"
    if subordinate_start(USER) is not None and shutil.which("newuidmap"):
        assert nobody.stdout == "65534\n", nobody.stderr


def test_info_reports_rootless(tester, data_home):
    result = as_user(tester, data_home, "layerlab info")
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)

    assert lines["Rootless"] == "true"
    assert lines["Root"] == os.path.join(data_home, "layerlab")
    assert "uid 0->" in lines["User namespace"]
    assert lines["Overlay in user namespace"].startswith("yes")
    assert "Cgroup version" in lines
    assert "Seccomp" in lines


def test_acceptance_command_line(tester, data_home):
    # The same command line an operator types: su keeps XDG_DATA_HOME, so the store stays per test.
    venv = VENV
    command = (
        f"env -u LAYERLAB_ROOT PATH={venv}/bin:/usr/bin:/bin layerlab bootstrap busybox >/dev/null 2>&1; "
        f"env -u LAYERLAB_ROOT PATH={venv}/bin:/usr/bin:/bin layerlab run --rm busybox sh -c 'echo rootless-ok'"
    )
    if not shutil.which("su"):
        _unavailable("su for the acceptance command line")
    env = dict(os.environ, XDG_DATA_HOME=data_home)
    env.pop("LAYERLAB_ROOT", None)

    result = subprocess.run([shutil.which("su"), USER, "-c", command], env=env, cwd="/", capture_output=True, text=True,
                            timeout=300, check=False)

    assert "rootless-ok" in result.stdout.splitlines(), result.stdout + result.stderr
    assert os.path.isdir(os.path.join(data_home, "layerlab", "snapshots"))


def _user_mode_network_or_skip():
    from layerlab.engine.network.usermode import USER_MODES

    # /dev/net/tun is 0600 on some hosts until a root step opens it to users.
    if not os.stat("/dev/net/tun").st_mode & 0o006 or not any(shutil.which(mode) for mode in USER_MODES):
        _unavailable("slirp4netns or pasta and a /dev/net/tun that ordinary users can open")


def _helpers_of(tester) -> list[str]:
    """Return the user's live slirp4netns and pasta processes; a zombie waits only for init to reap it."""
    result = subprocess.run(["ps", "-u", str(tester.pw_uid), "-o", "stat=,comm="], capture_output=True, text=True)
    rows = [line.split(None, 1) for line in result.stdout.splitlines() if line.strip()]
    return [name for state, name in rows if not state.startswith("Z") and name.startswith(("slirp4netns", "passt"))]


def test_default_network_user_mode(tester, data_home):
    _user_mode_network_or_skip()
    bootstrap(tester, data_home)

    result = as_user(tester, data_home, "layerlab run --rm busybox sh -c 'ip -4 -o addr show; ip route'")

    interfaces = [line.split()[1] for line in result.stdout.splitlines() if " inet " in line]
    assert [name for name in interfaces if name != "lo"], result.stdout
    assert "default via " in result.stdout
    assert _helpers_of(tester) == []


def test_network_create_needs_root(tester, data_home):
    result = as_user(tester, data_home, "layerlab network create classroom", check=False)

    assert result.returncode != 0
    assert "cannot create network 'classroom'" in result.stderr
    assert "use the default network (slirp4netns or pasta), host or none" in result.stderr
    assert "Traceback" not in result.stderr


def test_publish_user_mode(tester, data_home):
    import time
    import urllib.request

    _user_mode_network_or_skip()
    bootstrap(tester, data_home)
    as_user(tester, data_home, "layerlab run -d --name web -p 18081:80 busybox sh -c "
                               "'mkdir -p /w && echo rootless-served > /w/i && httpd -f -p 80 -h /w'")
    try:
        body = b""
        for _ in range(30):
            try:
                with urllib.request.urlopen("http://127.0.0.1:18081/i", timeout=2) as response:
                    body = response.read()
                break
            except OSError:
                time.sleep(0.2)
        ps = as_user(tester, data_home, "layerlab ps --format '{{.Ports}}'")
        again = as_user(tester, data_home, "layerlab run --rm -p 18081:80 busybox true", check=False)
    finally:
        as_user(tester, data_home, "layerlab rm -f web", check=False)
    time.sleep(0.5)  # the monitor stops the helper after the container is killed

    assert body == b"rootless-served\n"
    assert ps.stdout == "0.0.0.0:18081->80/tcp\n"
    assert again.returncode == 125
    assert "Bind for 0.0.0.0:18081 failed: port is already allocated" in again.stderr
    assert _helpers_of(tester) == []


def test_pasta_network(tester, data_home):
    _user_mode_network_or_skip()
    if not shutil.which("pasta"):
        _unavailable("pasta (Debian's passt package)")
    bootstrap(tester, data_home)

    result = as_user(tester, data_home, "layerlab run --rm --network pasta busybox ip route")

    assert "default via " in result.stdout
    assert _helpers_of(tester) == []

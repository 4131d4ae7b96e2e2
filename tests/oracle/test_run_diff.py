"""The same busybox container under `layerlab run` and `docker run` sees the same world.

Both run with `--network none`; Docker is the private Engine of the
`dockerd` fixture, with the same busybox rootfs imported. Where the two
differ on purpose, docs/compatibility.md gives the reason, and the test
leaves that field out.
"""

import re

import pytest

from tests.engine.conftest import busybox, busybox_template  # noqa: F401 (fixtures)

DOCKER_IMAGE = "layerlab-test/busybox:run-diff"

# Mount points whose file system type and flags are compared; the masked
# paths are among them.
COMPARED_TARGETS = ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/proc/bus", "/proc/fs",
                    "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", "/proc/acpi", "/proc/kcore", "/proc/keys",
                    "/proc/timer_list", "/proc/scsi", "/sys/firmware")

# Options that carry sizes or per-mount values rather than policy.
_VARYING_OPTIONS = re.compile(r"^(size|nr_inodes|inode64|uuid)=?")


@pytest.fixture(scope="module")
def docker_busybox(dockerd, busybox_rootfs_tar):
    dockerd.import_rootfs(busybox_rootfs_tar, DOCKER_IMAGE)
    return dockerd


@pytest.fixture
def both(busybox, cli, docker_busybox):  # noqa: F811 (fixture)
    """Run the same `run` flags and command under layerlab and Docker; return (layerlab, docker) results."""

    def run(*args, image_args=()):
        ours = cli("run", "--rm", "--network", "none", *args, "busybox", *image_args)
        theirs = docker_busybox.docker("run", "--rm", "--network", "none", *args, DOCKER_IMAGE, *image_args,
                                       check=False)
        return ours, theirs

    return run


def status_fields(text, names):
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in names:
            fields[name] = value.strip()
    return fields


def mount_table(text):
    """Return {target: (type, options without sizes)} for COMPARED_TARGETS, from /proc/self/mounts."""
    table = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[1] not in COMPARED_TARGETS:
            continue
        options = tuple(sorted(option for option in fields[3].split(",") if not _VARYING_OPTIONS.match(option)))
        table[fields[1]] = (fields[2], options)
    return table


def test_missing_command(both):
    ours, theirs = both(image_args=("nosuch",))

    assert ours.returncode == theirs.returncode == 127
    assert 'exec: "nosuch": executable file not found in $PATH' in ours.stderr
    assert 'exec: "nosuch": executable file not found in $PATH' in theirs.stderr


def test_not_executable(both):
    ours, theirs = both(image_args=("/etc/passwd",))

    assert ours.returncode == theirs.returncode == 126
    assert "permission denied" in ours.stderr
    assert "permission denied" in theirs.stderr


@pytest.mark.parametrize("flags", [(), ("--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN"), ("--cap-drop", "ALL")])
def test_capabilities(both, flags):
    ours, theirs = both(*flags, image_args=("cat", "/proc/self/status"))

    names = ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb", "NoNewPrivs")

    assert status_fields(ours.stdout, names) == status_fields(theirs.stdout, names)


def test_seccomp_field(both):
    ours, theirs = both(image_args=("cat", "/proc/self/status"))

    assert status_fields(ours.stdout, ("Seccomp",)) == status_fields(theirs.stdout, ("Seccomp",)) == {"Seccomp": "2"}


def test_seccomp_unconfined_field(both):
    ours, theirs = both("--security-opt", "seccomp=unconfined", image_args=("cat", "/proc/self/status"))

    assert status_fields(ours.stdout, ("Seccomp",)) == status_fields(theirs.stdout, ("Seccomp",)) == {"Seccomp": "0"}


def test_no_new_privileges_field(both):
    ours, theirs = both("--security-opt", "no-new-privileges", image_args=("cat", "/proc/self/status"))

    assert status_fields(ours.stdout, ("NoNewPrivs",)) == status_fields(theirs.stdout, ("NoNewPrivs",))


def test_mount_table(both):
    ours, theirs = both(image_args=("cat", "/proc/self/mounts"))

    assert mount_table(ours.stdout) == mount_table(theirs.stdout)


def test_read_only_root_mount(both):
    ours, theirs = both("--read-only", image_args=("sh", "-c", "grep ' / ' /proc/self/mounts | cut -d' ' -f4"))

    assert ours.stdout.split(",")[0] == theirs.stdout.split(",")[0] == "ro"


def test_dev_listing(both):
    ours, theirs = both(image_args=("ls", "/dev"))

    assert ours.stdout == theirs.stdout


def test_dev_listing_with_tty(both):
    ours, theirs = both("-t", image_args=("ls", "/dev"))

    assert ours.stdout == theirs.stdout


def test_tty_name(both):
    ours, theirs = both("-t", image_args=("tty",))

    assert ours.stdout == theirs.stdout == "/dev/pts/0\n"


def test_hostname_format(both):
    ours, theirs = both(image_args=("hostname",))

    assert re.fullmatch(r"[0-9a-f]{12}\n", ours.stdout)
    assert re.fullmatch(r"[0-9a-f]{12}\n", theirs.stdout)


def test_etc_hosts(both):
    ours, theirs = both(image_args=("cat", "/etc/hosts"))

    assert ours.stdout.splitlines() == theirs.stdout.splitlines()


def test_environment(both):
    ours, theirs = both("-e", "EXTRA=1", image_args=("sh", "-c", "env | sort | grep -v ^HOSTNAME="))

    assert ours.stdout == theirs.stdout


def test_id(both):
    ours, theirs = both(image_args=("id",))

    assert ours.stdout == theirs.stdout


def test_id_as_user(both):
    ours, theirs = both("-u", "nobody", image_args=("id",))

    assert ours.stdout == theirs.stdout


def test_ulimits(both):
    ours, theirs = both(image_args=("sh", "-c", "ulimit -a"))

    assert ours.stdout == theirs.stdout


def test_stdin_without_interactive(both):
    ours, theirs = both(image_args=("cat",))

    assert ours.stdout == theirs.stdout == ""


def test_env_file(both, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nA=1\nB= spaced \nQUOTED=\"q\"\n")

    ours, theirs = both("--env-file", env_file, image_args=("sh", "-c", 'echo "[$A][$B][$QUOTED]"'))

    assert ours.stdout == theirs.stdout


def test_tmpfs_options(both):
    ours, theirs = both("--tmpfs", "/scratch", image_args=("sh", "-c", "grep ' /scratch ' /proc/self/mounts"))

    assert mount_options(ours.stdout) == mount_options(theirs.stdout)


def mount_options(line):
    fields = line.split()
    return sorted(option for option in fields[3].split(",") if not _VARYING_OPTIONS.match(option))

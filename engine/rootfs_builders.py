"""Base-image root file systems made from Debian packages, with no registry.

Each builder writes one uncompressed tarball, which becomes the single layer
of a base image, and returns metadata that records how it was made, so the
image can be labelled with its source:

- `build_busybox_rootfs`: `/bin/busybox` from Debian's `busybox-static`
  package, one relative symlink per applet, and the account files of a
  busybox image.
- `build_debian_rootfs`: `mmdebstrap --variant=minbase`, the tool the
  official Debian images' debootstrap tarballs can be made with, plus the
  clean-up those images do.

Bootstrap is not a hot path, so both call `dpkg-deb`, `apt-get` and
`mmdebstrap` as subprocesses.
"""

import datetime
import email.utils
import functools
import glob
import hashlib
import io
import logging
import os
import shlex
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from layerlab.engine.errors import InvalidArgumentError, LayerlabError, NotFoundError

log = logging.getLogger(__name__)

BUSYBOX_PACKAGE = "busybox-static"
APT_ARCHIVES = "/var/cache/apt/archives"

# Accounts and groups of the usual busybox image: root plus the system users
# that busybox applets (httpd, crond, sendmail) expect to find.
BUSYBOX_PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""

BUSYBOX_GROUP = """\
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
"""

# Locked passwords: `su` and `login` find every account, and none can log in.
BUSYBOX_SHADOW = "".join(
    f"{line.split(':', 1)[0]}:*:::::::\n" for line in BUSYBOX_PASSWD.splitlines()
)

# (path, mode) of the directories of the image, parents before children.
# /dev, /proc and /sys stay empty because the runtime mounts them.
BUSYBOX_DIRS = [
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("home", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("sbin", 0o755),
    ("var", 0o755),
    ("var/spool", 0o755),
    ("var/spool/mail", 0o755),
    ("var/www", 0o755),
]


@dataclass(frozen=True)
class BusyboxSource:
    """Where the busybox binary comes from, and the package that shipped it."""

    origin: str          # "apt-cache", "apt-get download" or "installed"
    package: str
    version: str
    deb_path: str | None  # None when the installed binary is used
    deb_sha256: str | None


def require_tool(name, package):
    """Return the path of `name`, or raise an error naming the package."""
    path = shutil.which(name)
    if path is None:
        raise NotFoundError(
            f"{name} was not found on PATH; install it with: apt-get install -y {package}"
        )
    return path


def _die_with_parent():
    # Runs in the child after setsid(2) (start_new_session), before exec.
    from layerlab.engine.runtime import syscalls

    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGTERM)


def run_detached(args, **kwargs):
    """Run a command in a session and process group of its own, killed with SIGTERM when the caller's thread ends.

    mmdebstrap signals its whole process group when it fails (SIGHUP when
    the disk fills), which would kill the CLI or the Jupyter kernel that
    started it if they shared the group.
    """
    log.debug("running %s", shlex.join(args))
    return subprocess.run(args, capture_output=True, text=True, check=False, start_new_session=True,
                          preexec_fn=_die_with_parent, **kwargs)


def stderr_tail(result, lines=20):
    return "\n".join(result.stderr.strip().splitlines()[-lines:])


def run_tool(args, **kwargs):
    """Run a command with `run_detached`, raising a LayerlabError with its stderr if it fails."""
    result = run_detached(args, **kwargs)
    if result.returncode != 0:
        raise LayerlabError(
            f"{shlex.join(args)} failed with exit status {result.returncode}:\n{stderr_tail(result)}"
        )
    return result.stdout


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(functools.partial(stream.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def compare_deb_versions(left, right):
    """Compare two Debian versions as dpkg does (-1, 0 or 1)."""
    for result, operator in ((-1, "lt"), (0, "eq")):
        check = subprocess.run(["dpkg", "--compare-versions", left, operator, right], check=False)
        if check.returncode == 0:
            return result
    return 1


def deb_field(deb_path, field):
    return run_tool(["dpkg-deb", "-f", deb_path, field]).strip()


def source_from_deb(deb_path, origin):
    return BusyboxSource(
        origin=origin,
        package=deb_field(deb_path, "Package"),
        version=deb_field(deb_path, "Version"),
        deb_path=deb_path,
        deb_sha256=sha256_file(deb_path),
    )


def find_cached_deb(package, archives=APT_ARCHIVES):
    """Return the newest `package` .deb in apt's cache, or None."""
    paths = glob.glob(os.path.join(archives, f"{package}_*.deb"))
    if not paths:
        return None

    versions = {path: deb_field(path, "Version") for path in paths}
    by_version = functools.cmp_to_key(lambda a, b: compare_deb_versions(versions[a], versions[b]))
    return max(paths, key=by_version)


def download_deb(package, dest_dir):
    """Fetch the candidate `package` .deb with apt-get, or return None."""
    require_tool("apt-get", "apt")
    result = run_detached(["apt-get", "download", "-q", package], cwd=dest_dir)
    if result.returncode != 0:
        log.warning("apt-get download %s failed: %s", package, result.stderr.strip())
        return None

    paths = glob.glob(os.path.join(dest_dir, f"{package}_*.deb"))
    return paths[0] if paths else None


def installed_version(package):
    """Return the installed version of `package`, or None."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}\t${Version}", package],
        capture_output=True, text=True, check=False,
    )
    status, _, version = result.stdout.partition("\t")
    if result.returncode != 0 or status != "install ok installed":
        return None
    return version


def locate_busybox(download_dir):
    """Find the busybox-static package: apt's cache, then a download, then the installed copy.

    The cache comes first so that repeated builds need no network.
    """
    require_tool("dpkg-deb", "dpkg")

    cached = find_cached_deb(BUSYBOX_PACKAGE)
    if cached:
        return source_from_deb(cached, "apt-cache")

    downloaded = download_deb(BUSYBOX_PACKAGE, download_dir)
    if downloaded:
        return source_from_deb(downloaded, "apt-get download")

    version = installed_version(BUSYBOX_PACKAGE)
    if version and os.path.exists("/bin/busybox"):
        log.warning("no %s .deb could be had; using the installed /bin/busybox", BUSYBOX_PACKAGE)
        return BusyboxSource("installed", BUSYBOX_PACKAGE, version, None, None)

    raise NotFoundError(
        f"no {BUSYBOX_PACKAGE} package was found in {APT_ARCHIVES}, downloaded or installed; "
        f"run: apt-get update && apt-get install -y {BUSYBOX_PACKAGE}"
    )


def extract_busybox(source, work_dir):
    """Return the path of a busybox binary from `source`, extracted under `work_dir`."""
    if source.deb_path is None:
        return "/bin/busybox"

    unpacked = os.path.join(work_dir, "deb")
    run_tool(["dpkg-deb", "-x", source.deb_path, unpacked])
    binary = os.path.join(unpacked, "bin", "busybox")
    if not os.path.isfile(binary):
        raise NotFoundError(f"{source.deb_path} has no bin/busybox; is it the {BUSYBOX_PACKAGE} package?")
    return binary


def list_applets(busybox):
    """Return the applets' install paths (like "usr/bin/wc") that `busybox` reports."""
    output = run_tool([busybox, "--list-full"])
    return sorted({line.strip().lstrip("/") for line in output.splitlines() if line.strip()})


def relative_link(path, target="bin/busybox"):
    """Return the symlink text that points from `path` to `target`, both relative to /."""
    return os.path.relpath(target, os.path.dirname(path) or ".")


class DeterministicTar:
    """A tar writer whose entries are owned by 0:0 and clamped to one mtime."""

    def __init__(self, fileobj, mtime):
        self.tar = tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT)
        self.mtime = mtime

    def _info(self, name, kind, mode, mtime=None):
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = self.mtime if mtime is None else min(int(mtime), self.mtime)
        return info

    def add_dir(self, name, mode):
        self.tar.addfile(self._info(name + "/", tarfile.DIRTYPE, mode))

    def add_bytes(self, name, data, mode):
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def add_file(self, name, path, mode):
        stat = os.stat(path)
        info = self._info(name, tarfile.REGTYPE, mode, stat.st_mtime)
        info.size = stat.st_size
        with open(path, "rb") as stream:
            self.tar.addfile(info, stream)

    def add_symlink(self, name, target):
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)

    def close(self):
        self.tar.close()


class HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, stream):
        self.stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.digest.update(data)
        self.size += len(data)
        return self.stream.write(data)

    def tell(self):
        return self.size

    def flush(self):
        self.stream.flush()


def write_atomically(dest_tar, write):
    """Call `write(stream)` on a temporary file beside `dest_tar`, then rename it into place.

    Returns (sha256 hex, size in bytes) of what was written.
    """
    dest_dir = os.path.dirname(os.path.abspath(dest_tar))
    os.makedirs(dest_dir, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=".rootfs-", suffix=".tar", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as raw:
            hashing = HashingWriter(raw)
            write(hashing)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, dest_tar)
    except BaseException:
        os.unlink(tmp_path)
        raise
    return hashing.digest.hexdigest(), hashing.size


def resolve_epoch(source_date_epoch, fallback):
    """Return the epoch to clamp mtimes to: the argument, $SOURCE_DATE_EPOCH, else `fallback`."""
    if source_date_epoch is None:
        source_date_epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if source_date_epoch is None:
        return int(fallback)
    try:
        return int(source_date_epoch)
    except ValueError:
        raise InvalidArgumentError(
            f"invalid SOURCE_DATE_EPOCH {source_date_epoch!r}: use seconds since 1970 as an integer"
        ) from None


def applet_dirs(applets):
    """Return the parent directories of `applets` that BUSYBOX_DIRS lacks, parents first."""
    known = {name for name, _ in BUSYBOX_DIRS}
    missing = set()
    for applet in applets:
        parent = os.path.dirname(applet)
        while parent and parent not in known:
            missing.add(parent)
            parent = os.path.dirname(parent)
    return sorted(missing)


def write_busybox_tree(tar, busybox, applets):
    for name, mode in BUSYBOX_DIRS:
        tar.add_dir(name, mode)
    for name in applet_dirs(applets):
        tar.add_dir(name, 0o755)

    tar.add_file("bin/busybox", busybox, 0o755)
    for applet in applets:
        if applet != "bin/busybox":
            tar.add_symlink(applet, relative_link(applet))

    tar.add_bytes("etc/group", BUSYBOX_GROUP.encode(), 0o644)
    tar.add_bytes("etc/passwd", BUSYBOX_PASSWD.encode(), 0o644)
    tar.add_bytes("etc/shadow", BUSYBOX_SHADOW.encode(), 0o640)


def busybox_command(source):
    """Return how the busybox binary was obtained, as a command line."""
    if source.deb_path is None:
        return f"cp /bin/busybox  # installed {source.package} {source.version}"
    return f"dpkg-deb -x {os.path.basename(source.deb_path)}"


def build_busybox_rootfs(dest_tar, *, source_date_epoch=None):
    """Write a busybox root file system from Debian's busybox-static to `dest_tar`.

    Every mtime is clamped to `source_date_epoch` (default: $SOURCE_DATE_EPOCH,
    else the binary's mtime in the package), so two builds from the same
    package give the same bytes. Returns metadata for the image's labels.
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="layerlab-busybox-") as work_dir:
        source = locate_busybox(work_dir)
        busybox = extract_busybox(source, work_dir)
        applets = list_applets(busybox)
        epoch = resolve_epoch(source_date_epoch, os.stat(busybox).st_mtime)

        # Directories first, then files in a fixed order: every parent
        # precedes its children, and the order does not depend on the host.
        def write(stream):
            tar = DeterministicTar(stream, epoch)
            write_busybox_tree(tar, busybox, applets)
            tar.close()

        tar_sha256, size = write_atomically(dest_tar, write)

    seconds = round(time.monotonic() - started, 3)
    log.info("built busybox %s rootfs %s (%d bytes) in %.2f s", source.version, dest_tar, size, seconds)
    return {
        "name": "busybox",
        "package": source.package,
        "version": source.version,
        "origin": source.origin,
        "deb_sha256": source.deb_sha256,
        "applets": len(applets),
        "source_date_epoch": epoch,
        "tar_sha256": tar_sha256,
        "size": size,
        "seconds": seconds,
        "cmd": ["sh"],
        "labels": {
            "org.opencontainers.image.source": f"debian:{source.package}",
            "org.opencontainers.image.version": source.version,
            "dev.layerlab.bootstrap": busybox_command(source),
        },
    }


# Suites without -updates and -security archives.
SUITES_WITHOUT_UPDATES = {"sid", "unstable", "experimental", "rc-buggy"}

# apt settings in the spirit of the official Debian images, written by
# mmdebstrap into /etc/apt/apt.conf.d/99mmdebstrap. Each keeps a RUN step's
# layer small: no downloaded .debs or binary package caches are kept (the
# caches alone are ~40 MB after `apt-get update`), package lists stay
# gzip-compressed, and no translations are fetched.
_CLEAN_CACHES = '"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true";'
APT_OPTIONS = [
    'Binary::apt::APT::Keep-Downloaded-Packages "false"',
    f"DPkg::Post-Invoke {{ {_CLEAN_CACHES} }}",
    f"APT::Update::Post-Invoke {{ {_CLEAN_CACHES} }}",
    'Dir::Cache::pkgcache ""',
    'Dir::Cache::srcpkgcache ""',
    'Acquire::GzipIndexes "true"',
    'Acquire::CompressionTypes::Order:: "gz"',
    'Acquire::Languages "none"',
]


def security_mirror(mirror):
    """Return the security archive beside `mirror` (".../debian" -> ".../debian-security")."""
    trimmed = mirror.rstrip("/")
    if trimmed.endswith("/debian"):
        return trimmed + "-security"
    return "http://security.debian.org/debian-security"


def source_lines(suite, mirror):
    """Return the apt source lines for `suite`: main, plus -updates and -security where they exist."""
    lines = [f"deb {mirror} {suite} main"]
    if suite not in SUITES_WITHOUT_UPDATES:
        lines.append(f"deb {mirror} {suite}-updates main")
        lines.append(f"deb {security_mirror(mirror)} {suite}-security main")
    return lines


def release_date(mirror, suite, timeout=30):
    """Return the Date of `suite`'s InRelease file as a POSIX time, or None if it can't be read."""
    url = f"{mirror.rstrip('/')}/dists/{suite}/InRelease"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            head = response.read(4096).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as error:
        log.warning("could not read %s for SOURCE_DATE_EPOCH: %s", url, error)
        return None

    for line in head.splitlines():
        if line.startswith("Date:"):
            return int(email.utils.parsedate_to_datetime(line[5:].strip()).timestamp())
    log.warning("%s has no Date field; SOURCE_DATE_EPOCH is unset", url)
    return None


def snapshot_epoch(suite, mirror):
    """Return the newest Release date of the archives in `source_lines`, or None."""
    dates = []
    for line in source_lines(suite, mirror):
        _, archive_mirror, archive_suite, _ = line.split(" ", 3)
        date = release_date(archive_mirror, archive_suite)
        if date is not None:
            dates.append(date)
    return max(dates) if dates else None


def mmdebstrap_command(suite, dest_tar, mirror, variant, slim):
    mode = "root" if os.geteuid() == 0 else "unshare"
    command = [
        "mmdebstrap",
        f"--variant={variant}",
        "--format=tar",
        f"--mode={mode}",
        "--quiet",
        # The runtime mounts both per container; copies from the build host
        # would make the tar differ from host to host.
        '--customize-hook=rm -f "$1"/etc/resolv.conf "$1"/etc/hostname',
    ]
    command += [f"--aptopt={option}" for option in APT_OPTIONS]

    if slim:
        # The "slim" images' choice: no manual pages, info pages or
        # documentation beyond copyright files.
        for pattern in ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*"):
            command.append(f"--dpkgopt=path-exclude={pattern}")
        command.append("--dpkgopt=path-include=/usr/share/doc/*/copyright")

    command += [suite, dest_tar]
    command += source_lines(suite, mirror)
    return command


def copy_without_devices(source_tar, stream):
    """Copy `source_tar` to `stream`, leaving out what mmdebstrap put under /dev.

    Images keep /dev empty, as the official ones do: the runtime makes a
    minimal /dev, and an unprivileged extraction cannot create device nodes.
    """
    with tarfile.open(source_tar, "r:") as source, \
            tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as dest:
        for member in source:
            if member.name.lstrip("./").startswith("dev/"):
                continue
            fileobj = source.extractfile(member) if member.isreg() else None
            dest.addfile(member, fileobj)


def searchable_by_others(path):
    """Return whether every directory from `path` up to / has the search bit for others."""
    path = os.path.realpath(path)
    while True:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def unshare_tmpdir(dest_tar):
    """Make the TMPDIR for mmdebstrap's unshare mode and return its path.

    In unshare mode, mmdebstrap's root directory belongs to a subordinate
    id, which reaches TMPDIR through the permissions for others only. A
    student's TMPDIR is often mode 0700, and so is the scratch folder that
    `bootstrap` writes the tar into. So the directory goes in the first of
    the tar's folder, that folder's parent, /var/tmp and /tmp that others
    can search, and gets mode 0711 itself.
    """
    dest_dir = os.path.dirname(dest_tar)
    for parent in (dest_dir, os.path.dirname(dest_dir), "/var/tmp", "/tmp"):
        if searchable_by_others(parent):
            path = tempfile.mkdtemp(prefix="layerlab-mmdebstrap-", dir=parent)
            os.chmod(path, 0o711)
            return path
    raise LayerlabError(
        f"mmdebstrap --mode=unshare needs a temporary directory that subordinate ids can reach, "
        f"but neither {dest_dir}, its parent, /var/tmp nor /tmp is searchable by others; "
        f"run `chmod o+x` on the folders above {dest_dir}"
    )


def mmdebstrap_version():
    output = run_tool(["mmdebstrap", "--version"])
    return output.split()[-1] if output.split() else "unknown"


def build_debian_rootfs(suite, dest_tar, *, mirror="http://deb.debian.org/debian", variant="minbase", slim=False):
    """Write a Debian `suite` root file system, made by mmdebstrap, to `dest_tar`.

    The tar includes apt sources for the suite (main, -updates, -security),
    no package lists or caches, and no /etc/resolv.conf or /etc/hostname.
    SOURCE_DATE_EPOCH is the newest Release date of those archives (unless
    set in the environment), so two builds of the same archive state give
    the same bytes. Returns metadata for the image's labels.
    """
    require_tool("mmdebstrap", "mmdebstrap")
    if not suite or "/" in suite or suite.startswith("-"):
        raise InvalidArgumentError(f"invalid Debian suite {suite!r}: use a name such as bookworm")

    epoch = os.environ.get("SOURCE_DATE_EPOCH") or snapshot_epoch(suite, mirror)
    env = dict(os.environ)
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(epoch)

    dest_tar = os.path.abspath(dest_tar)
    tmp_tar = f"{dest_tar}.partial"
    command = mmdebstrap_command(suite, tmp_tar, mirror, variant, slim)

    unshare_dir = None
    if "--mode=unshare" in command:
        unshare_dir = unshare_tmpdir(dest_tar)
        env["TMPDIR"] = unshare_dir

    started = time.monotonic()
    log.info("running %s", shlex.join(command))
    try:
        result = run_detached(command, env=env)
        if result.returncode != 0:
            status = f"signal {-result.returncode}" if result.returncode < 0 else f"exit status {result.returncode}"
            raise LayerlabError(f"mmdebstrap failed ({status}): {stderr_tail(result, 5) or 'no output'}; "
                                f"check free space in {os.path.dirname(dest_tar)}")
        tar_sha256, size = write_atomically(dest_tar, functools.partial(copy_without_devices, tmp_tar))
    finally:
        if os.path.exists(tmp_tar):
            os.unlink(tmp_tar)
        if unshare_dir is not None:
            # A failed run can leave files owned by subordinate ids in it.
            from layerlab.engine.rootless import remove_tree

            remove_tree(unshare_dir)
    seconds = round(time.monotonic() - started, 1)
    snapshot = None
    version = suite
    if epoch is not None:
        moment = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
        snapshot = moment.isoformat()
        version = f"{suite}-{moment:%Y%m%d}"
    label_command = mmdebstrap_command(suite, "rootfs.tar", mirror, variant, slim)
    log.info("built debian:%s rootfs %s (%d bytes) in %.1f s", suite, dest_tar, size, seconds)

    return {
        "name": f"debian:{suite}",
        "suite": suite,
        "mirror": mirror,
        "variant": variant,
        "slim": slim,
        "sources": source_lines(suite, mirror),
        "mmdebstrap_version": mmdebstrap_version(),
        "source_date_epoch": int(epoch) if epoch is not None else None,
        "snapshot_date": snapshot,
        "tar_sha256": tar_sha256,
        "size": size,
        "seconds": seconds,
        "cmd": ["bash"],
        "labels": {
            "org.opencontainers.image.source": f"debian:{suite}",
            "org.opencontainers.image.version": version,
            "dev.layerlab.bootstrap": shlex.join(label_command),
        },
    }



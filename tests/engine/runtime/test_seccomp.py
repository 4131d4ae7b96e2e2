"""Docker's default seccomp filter: compiled once by libseccomp, cached, and loaded from the cache."""

import errno
import os

import pytest

from layerlab.engine.runtime import seccomp, syscalls

pytestmark = pytest.mark.skipif(not seccomp.available(), reason="libseccomp2 is not installed")

CAPABILITIES = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETUID", "SETGID"}


def cache_path(capabilities):
    machine = os.uname().machine
    return seccomp._cache_path(seccomp.rules_for(capabilities, machine), machine)


def test_program_matches_libseccomp():
    machine = os.uname().machine
    compiled = seccomp._compile(seccomp.rules_for(CAPABILITIES, machine), machine)

    assert seccomp.program(CAPABILITIES) == compiled
    assert len(compiled) % 8 == 0


def test_program_cached_per_rule_set():
    seccomp.program(CAPABILITIES)
    with_admin = cache_path(CAPABILITIES | {"SYS_ADMIN"})
    seccomp.program(CAPABILITIES | {"SYS_ADMIN"})

    assert os.path.exists(cache_path(CAPABILITIES))
    assert with_admin != cache_path(CAPABILITIES)
    with open(with_admin, "rb") as cached:
        assert cached.read() == seccomp.program(CAPABILITIES | {"SYS_ADMIN"})


def test_damaged_cache_file_recompiled():
    expected = seccomp.program(CAPABILITIES)
    path = cache_path(CAPABILITIES)
    with open(path, "wb") as cached:
        cached.write(expected[:13])

    assert seccomp.program(CAPABILITIES) == expected
    with open(path, "rb") as cached:
        assert cached.read() == expected


def test_installed_program_blocks_unshare():
    program = seccomp.program(CAPABILITIES)
    pid = os.fork()
    if pid == 0:
        # The child's exit status carries the errno of unshare(2) under the filter.
        code = 100
        try:
            if os.geteuid() != 0:
                # Without CAP_SYS_ADMIN the kernel loads a filter only under no_new_privs.
                syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
            seccomp.install(program)
            syscalls.unshare(syscalls.CLONE_NEWUTS)
            code = 0
        except syscalls.SyscallError as error:
            code = error.errno or 101
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == errno.EPERM

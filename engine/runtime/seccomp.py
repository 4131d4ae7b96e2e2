"""seccomp: Docker's default system call filter, loaded through libseccomp with ctypes.

The profile is an allow-list: any system call not listed fails with EPERM.
The data below is the syscall list of moby's profiles/seccomp/default.json
(the profile Docker loads when no --security-opt seccomp= is given), kept as
Python data. Some calls are allowed only when the container has a given
capability, or only with given argument values, as in that profile.

Loading happens in two steps, because the filter is built on the host:
`program` returns the filter as a BPF program before pivot_root, and
`install` loads it just before the user switch, as runc does. Building the
program with libseccomp takes several milliseconds, as long as the rest of a
container start, so each program is cached in the runtime directory under a
key of its rules and of the libseccomp file that compiled it.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import logging
import os
import sys

from layerlab.engine.errors import ContainerError
from layerlab.engine.runtime import syscalls
from layerlab.engine.runtime.rundir import runtime_dir

log = logging.getLogger(__name__)

LIBRARY = "libseccomp.so.2"

# Allowed for every container.
ALLOWED = """
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3
epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old
eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64
fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync
fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64
fsync ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd getdents
getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer
getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid
getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area
gettid gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1
inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64
ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register io_uring_setup ipc kill
landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link
linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise
membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall
mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64
mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock
munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2 pause
pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64
pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg
recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2 restart_syscall
rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid
setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid
setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit
set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr shmat
shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall
socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs
sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime
utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
process_vm_readv process_vm_writev ptrace
""".split()

# Allowed only on these machines (os.uname().machine).
ALLOWED_ON_MACHINE = {
    "x86_64": "arch_prctl modify_ldt".split(),
    "aarch64": "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls".split(),
}

# Allowed only when the container has the capability.
ALLOWED_WITH_CAPABILITY = {
    "SYS_ADMIN": """bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount
                 mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname
                 sethostname setns syslog umount umount2 unshare""".split(),
    "SYS_BOOT": ["reboot"],
    "SYS_CHROOT": ["chroot"],
    "SYS_MODULE": ["delete_module", "init_module", "finit_module"],
    "SYS_PACCT": ["acct"],
    "SYS_PTRACE": ["kcmp", "pidfd_getfd", "process_madvise"],
    "SYS_RAWIO": ["iopl", "ioperm"],
    "SYS_TIME": ["settimeofday", "stime", "clock_settime", "clock_settime64"],
    "SYS_TTY_CONFIG": ["vhangup"],
    "SYS_NICE": ["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
    "SYSLOG": ["syslog"],
    "BPF": ["bpf"],
    "PERFMON": ["perf_event_open"],
    "DAC_READ_SEARCH": ["open_by_handle_at"],
}

# socket(2) with any family but AF_VSOCK, which is not namespaced.
AF_VSOCK = 40
# personality(2) only with these personas: PER_LINUX, PER_LINUX32, UNAME26,
# UNAME26|PER_LINUX32, and 0xffffffff, which only queries the current one.
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
# Without CAP_SYS_ADMIN, clone(2) may not create namespaces: these are the
# CLONE_NEW* flags (0x7E020000). clone3(2) passes its flags in memory, which
# a filter cannot read, so it fails with ENOSYS and libc falls back to clone.
CLONE_NAMESPACE_FLAGS = 0x7E020000

# <seccomp.h>: actions, comparison operators and filter attributes.
_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO_BASE = 0x00050000
_SCMP_CMP_NE = 1
_SCMP_CMP_EQ = 4
_SCMP_CMP_MASKED_EQ = 7
_SCMP_FLTATR_CTL_NNP = 3
_NR_SCMP_ERROR = -1

# Architectures added to the filter next to the native one, so a 32-bit
# program cannot use the other table to reach a blocked call.
_EXTRA_ARCHITECTURES = {"x86_64": ("x86", "x32"), "aarch64": ("arm",)}


def _errno_action(code):
    return _SCMP_ACT_ERRNO_BASE | (code & 0xFFFF)


class _ArgumentComparison(ctypes.Structure):
    # struct scmp_arg_cmp
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def available():
    """Return True when libseccomp can be loaded on this host."""
    try:
        ctypes.CDLL(LIBRARY)
    except OSError:
        return False
    return True


def library_version():
    """Return libseccomp's version as "2.5.4", or "" when it is missing."""
    try:
        library = ctypes.CDLL(LIBRARY)
    except OSError:
        return ""

    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    library.seccomp_version.restype = ctypes.POINTER(_Version)
    version = library.seccomp_version().contents
    return f"{version.major}.{version.minor}.{version.micro}"


def rules_for(capabilities, machine=None):
    """Return the filter's rules for a container with `capabilities` (names without CAP_).

    Each rule is (syscall name, action, comparisons), where action is
    "allow" or an errno number and comparisons are (argument index,
    operator, value, mask) tuples, all of which must hold.
    """
    machine = machine or os.uname().machine
    rules = [(name, "allow", ()) for name in ALLOWED]
    rules += [(name, "allow", ()) for name in ALLOWED_ON_MACHINE.get(machine, ())]
    for capability, names in ALLOWED_WITH_CAPABILITY.items():
        if capability in capabilities:
            rules += [(name, "allow", ()) for name in names]

    rules.append(("socket", "allow", ((0, "ne", AF_VSOCK, 0),)))
    rules += [("personality", "allow", ((0, "eq", persona, 0),)) for persona in PERSONALITIES]
    if "SYS_ADMIN" not in capabilities:
        rules.append(("clone", "allow", ((0, "masked_eq", 0, CLONE_NAMESPACE_FLAGS),)))
        rules.append(("clone3", errno.ENOSYS, ()))
    return rules


def program(capabilities) -> bytes:
    """Return Docker's default filter for a container with `capabilities` as BPF instructions.

    Raises ContainerError when libseccomp is missing and the cache has no
    program for these rules.
    """
    machine = os.uname().machine
    rules = rules_for(capabilities, machine)
    path = _cache_path(rules, machine)
    if path is not None:
        try:
            with open(path, "rb") as cached:
                instructions = cached.read()
            if instructions and len(instructions) % _INSTRUCTION_SIZE == 0:
                return instructions
        except FileNotFoundError:
            pass

    compiled = _compile(rules, machine)
    if path is not None:
        _store_in_cache(path, compiled)
    return compiled


def install(instructions: bytes) -> None:
    """Load a program from `program` on the calling thread; it survives execve(2).

    Without no_new_privs the kernel requires CAP_SYS_ADMIN, which the caller
    still has at this point in runc's order.
    """
    buffer = ctypes.create_string_buffer(instructions, len(instructions))
    header = _SocketFilterProgram(len(instructions) // _INSTRUCTION_SIZE, ctypes.addressof(buffer))
    try:
        syscalls.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(header))
    except OSError as error:
        raise ContainerError(
            f"loading the seccomp filter failed: {error.strerror}; run with --security-opt seccomp=unconfined "
            "to start the container without a filter"
        ) from None


class _SocketFilterProgram(ctypes.Structure):
    # struct sock_fprog
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_INSTRUCTION_SIZE = 8  # struct sock_filter
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_LIBRARY_DIRECTORIES = ("/usr/lib/{triplet}", "/lib/{triplet}", "/usr/lib64", "/lib64", "/usr/lib", "/lib")


def _cache_path(rules, machine):
    """Return the cache file for `rules`, or None when libseccomp's file, part of the key, is not found."""
    triplet = getattr(sys.implementation, "_multiarch", "")
    for directory in _LIBRARY_DIRECTORIES:
        try:
            library = os.stat(os.path.join(directory.format(triplet=triplet), LIBRARY))
        except OSError:
            continue
        key = repr((rules, machine, _EXTRA_ARCHITECTURES.get(machine), library.st_ino, library.st_size,
                    library.st_mtime_ns))
        return os.path.join(runtime_dir("seccomp"), hashlib.sha256(key.encode()).hexdigest() + ".bpf")
    return None


def _store_in_cache(path, compiled):
    # A concurrent start may write the same file: each writes its own and renames it into place.
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "wb") as stream:
            stream.write(compiled)
        os.rename(temporary, path)
    except OSError as error:
        log.debug("seccomp: cannot cache the compiled filter in %s: %s", path, error)


def _compile(rules, machine) -> bytes:
    library = _open_library()
    context = library.seccomp_init(_errno_action(errno.EPERM))
    if not context:
        raise ContainerError("seccomp_init failed: libseccomp could not allocate a filter")
    try:
        # No no_new_privs from the filter: NoNewPrivs in /proc/PID/status stays 0 as in Docker.
        library.seccomp_attr_set(context, _SCMP_FLTATR_CTL_NNP, 0)
        for name in _EXTRA_ARCHITECTURES.get(machine, ()):
            architecture = library.seccomp_arch_resolve_name(name.encode())
            # EEXIST: the architecture is there already; other failures leave
            # only the native table, which the filter's default still covers.
            if architecture and library.seccomp_arch_add(context, architecture) not in (0, -errno.EEXIST):
                log.debug("seccomp: cannot add architecture %s to the filter", name)
        for name, action, comparisons in rules:
            _add_rule(library, context, name, action, comparisons)
        return _export(library, context)
    finally:
        library.seccomp_release(context)


def _export(library, context) -> bytes:
    descriptor = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        result = library.seccomp_export_bpf(context, descriptor)
        if result < 0:
            raise ContainerError(f"seccomp_export_bpf failed: {os.strerror(-result)}")
        os.lseek(descriptor, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(descriptor, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(descriptor)


def _open_library():
    try:
        library = ctypes.CDLL(LIBRARY)
    except OSError:
        raise ContainerError(
            f"cannot load Docker's default seccomp profile: {LIBRARY} not found; install libseccomp2, "
            "or run with --security-opt seccomp=unconfined"
        ) from None
    library.seccomp_init.restype = ctypes.c_void_p
    library.seccomp_init.argtypes = [ctypes.c_uint32]
    library.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    library.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    library.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    library.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    library.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    library.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                               ctypes.POINTER(_ArgumentComparison)]
    library.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    library.seccomp_release.argtypes = [ctypes.c_void_p]
    return library


_OPERATORS = {"ne": _SCMP_CMP_NE, "eq": _SCMP_CMP_EQ, "masked_eq": _SCMP_CMP_MASKED_EQ}


def _add_rule(library, context, name, action, comparisons):
    number = library.seccomp_syscall_resolve_name(name.encode())
    if number == _NR_SCMP_ERROR:
        # libseccomp older than the profile does not know this call.
        log.debug("seccomp: libseccomp does not know the system call %s; it stays blocked", name)
        return

    array = (_ArgumentComparison * max(len(comparisons), 1))()
    for index, (argument, operator, value, mask) in enumerate(comparisons):
        # For SCMP_CMP_MASKED_EQ datum_a is the mask and datum_b the value.
        if operator == "masked_eq":
            array[index] = _ArgumentComparison(argument, _OPERATORS[operator], mask, value)
        else:
            array[index] = _ArgumentComparison(argument, _OPERATORS[operator], value, 0)
    code = _SCMP_ACT_ALLOW if action == "allow" else _errno_action(action)
    result = library.seccomp_rule_add_array(context, code, number, len(comparisons), array)
    if result < 0:
        # A call that exists on another architecture only, such as chown32
        # on x86_64, cannot always be added; it stays blocked.
        log.debug("seccomp: rule for %s not added: %s", name, os.strerror(-result))

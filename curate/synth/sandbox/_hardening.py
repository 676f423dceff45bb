"""Process-level layers a sandbox worker puts on itself before it runs anything (stdlib only).

Run once, at worker start, after the modules the worker needs are imported:

1. resource limits: address space (memory), CPU time (a lifetime cap; the per-task limit is a timer),
   file size 0 (no file grows), no core dumps, no new processes (RLIMIT_NPROC; not enforced for root,
   which is why seccomp also refuses them), few file descriptors;
2. a new, empty network namespace (Linux; as root, or through a user namespace where unprivileged
   ones are allowed): no interface but a loopback that is down, so no address is reachable;
3. a seccomp filter (Linux x86-64 and aarch64) that makes the kernel refuse, with EPERM, every call
   that opens a file (read or write), creates a socket, starts a process or thread, executes a
   program, signals another process, changes a file's name, mode or owner, raises a resource limit,
   or changes namespaces; any newer call it does not know is refused with ENOSYS.

Each layer reports whether it took effect; the worker sends that report to the parent, which keeps it
as `SandboxPool.layers`. The language-level layers (AST allow-list, restricted builtins) hold
without any of these; these are what still holds if one of those were ever bypassed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import signal
import struct

# Syscall numbers refused with EPERM. x86-64: arch/x86/entry/syscalls/syscall_64.tbl; aarch64 uses
# the generic table (include/uapi/asm-generic/unistd.h), which has no open, fork, unlink, ... at all.
_DENY = {
    "x86_64": {
        "open": 2, "creat": 85, "openat": 257, "openat2": 437, "open_by_handle_at": 304,
        "name_to_handle_at": 303, "memfd_create": 319,
        "socket": 41, "socketpair": 53, "connect": 42, "bind": 49, "listen": 50, "accept": 43, "accept4": 288,
        "fork": 57, "vfork": 58, "clone": 56, "clone3": 435, "execve": 59, "execveat": 322,
        "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
        "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311,
        "unlink": 87, "unlinkat": 263, "rename": 82, "renameat": 264, "renameat2": 316, "mkdir": 83,
        "mkdirat": 258, "rmdir": 84, "link": 86, "linkat": 265, "symlink": 88, "symlinkat": 266,
        "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452, "chown": 92, "fchown": 93,
        "lchown": 94, "fchownat": 260, "truncate": 76, "ftruncate": 77, "mknod": 133, "mknodat": 259,
        "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197, "lremovexattr": 198,
        "fremovexattr": 199, "utime": 132, "utimes": 235, "utimensat": 280, "futimesat": 261,
        "setrlimit": 160, "prlimit64": 302, "unshare": 272, "setns": 308, "mount": 165, "umount2": 166,
        "pivot_root": 155, "chroot": 161, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "keyctl": 250, "add_key": 248, "request_key": 249, "personality": 135, "io_uring_setup": 425,
        "chdir": 80, "fchdir": 81,
    },
    "aarch64": {
        "openat": 56, "openat2": 437, "open_by_handle_at": 265, "name_to_handle_at": 264, "memfd_create": 279,
        "socket": 198, "socketpair": 199, "connect": 203, "bind": 200, "listen": 201, "accept": 202,
        "accept4": 242, "clone": 220, "clone3": 435, "execve": 221, "execveat": 281,
        "kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240,
        "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438, "ptrace": 117,
        "process_vm_readv": 270, "process_vm_writev": 271,
        "unlinkat": 35, "renameat": 38, "renameat2": 276, "mkdirat": 34, "linkat": 37, "symlinkat": 36,
        "fchmod": 52, "fchmodat": 53, "fchmodat2": 452, "fchown": 55, "fchownat": 54, "truncate": 45,
        "ftruncate": 46, "mknodat": 33, "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "removexattr": 14,
        "lremovexattr": 15, "fremovexattr": 16, "utimensat": 88,
        "setrlimit": 164, "prlimit64": 261, "unshare": 97, "setns": 268, "mount": 40, "umount2": 39,
        "pivot_root": 41, "chroot": 51, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
        "keyctl": 219, "add_key": 217, "request_key": 218, "personality": 92, "io_uring_setup": 425,
        "chdir": 49, "fchdir": 50,
    },
}
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_FIRST_UNKNOWN = 424                       # calls numbered from here on are refused unless listed below
_NEW_ALLOWED = {436, 439, 441}            # close_range, faccessat2, epoll_pwait2
_X32_BIT = 0x40000000

_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x06
_RET_KILL_PROCESS, _RET_ALLOW, _RET_ERRNO = 0x80000000, 0x7FFF0000, 0x00050000
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_PR_SET_DUMPABLE = 4
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000


def _filter(arch: str) -> bytes:
    """The BPF program: check the architecture, then refuse the listed calls."""
    deny = sorted(_DENY[arch].values())
    head = [(_BPF_LD_W_ABS, 0, 0, 4), (_BPF_JEQ_K, 1, 0, _AUDIT_ARCH[arch]), (_BPF_RET_K, 0, 0, _RET_KILL_PROCESS),
            (_BPF_LD_W_ABS, 0, 0, 0)]
    checks: list[tuple[int, str, int]] = []          # (opcode, target label, k)
    if arch == "x86_64":
        checks.append((_BPF_JGE_K, "eperm", _X32_BIT))
    checks += [(_BPF_JEQ_K, "eperm", nr) for nr in deny]
    checks += [(_BPF_JEQ_K, "allow", nr) for nr in sorted(_NEW_ALLOWED)]
    checks.append((_BPF_JGE_K, "enosys", _FIRST_UNKNOWN))
    tail = {"allow": _RET_ALLOW, "eperm": _RET_ERRNO | errno.EPERM, "enosys": _RET_ERRNO | errno.ENOSYS}
    labels = {name: len(head) + len(checks) + i for i, name in enumerate(tail)}
    program = list(head)
    for opcode, label, k in checks:
        here = len(program)
        program.append((opcode, labels[label] - here - 1, 0, k))
    program += [(_BPF_RET_K, 0, 0, value) for value in tail.values()]
    return b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in program)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.prctl.restype = ctypes.c_int
    libc.unshare.argtypes = [ctypes.c_int]
    libc.unshare.restype = ctypes.c_int
    return libc


def _install_seccomp(libc) -> str:
    arch = platform.machine()
    if arch not in _DENY:
        return f"unsupported architecture {arch}"
    program = _filter(arch)
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"PR_SET_NO_NEW_PRIVS failed: {os.strerror(ctypes.get_errno())}"
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        return f"PR_SET_SECCOMP failed: {os.strerror(ctypes.get_errno())}"
    return "on"


def _new_network_namespace(libc) -> str:
    """Enter an empty network namespace: directly as root, else inside a new user namespace."""
    if libc.unshare(_CLONE_NEWNET) == 0:
        return "on"
    first = os.strerror(ctypes.get_errno())
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0:
        return "on (user namespace)"
    return f"unavailable ({first}; with a user namespace: {os.strerror(ctypes.get_errno())})"


def _limit(which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))


def harden(memory_bytes: int, cpu_seconds: int, max_fds: int) -> dict[str, str]:
    """Apply every layer this platform supports; returns {layer: 'on' or why not}."""
    layers: dict[str, str] = {}
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # a write past RLIMIT_FSIZE fails with EFBIG
    limits = [("memory", resource.RLIMIT_AS, memory_bytes), ("cpu", resource.RLIMIT_CPU, cpu_seconds),
              ("file_size", resource.RLIMIT_FSIZE, 0), ("core", resource.RLIMIT_CORE, 0),
              ("processes", resource.RLIMIT_NPROC, 0), ("fds", resource.RLIMIT_NOFILE, max_fds)]
    for name, which, value in limits:
        try:
            _limit(which, value)
            layers[f"rlimit_{name}"] = "on"
        except (ValueError, OSError) as error:
            layers[f"rlimit_{name}"] = f"failed: {error}"
    try:
        libc = _libc()
    except OSError as error:
        layers["network_namespace"] = layers["seccomp"] = f"no libc: {error}"
        return layers
    # (No PR_SET_PDEATHSIG: it fires when the parent *thread* that started the worker ends, and pools
    # start workers from short-lived threads. A worker ends when its request pipe closes instead.)
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)                    # no ptrace attach, no core
    layers["network_namespace"] = _new_network_namespace(libc)
    layers["seccomp"] = _install_seccomp(libc)
    return layers

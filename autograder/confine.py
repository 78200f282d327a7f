"""
Confinement of the sandbox's children: what student code may read, write and
reach. Needs no root where the kernel allows it.

Layers, probed once when the worker starts (`probe`), strongest first:

- **files**: Landlock (Linux >= 5.13): read access to the Python installation
  and the libraries, and to the prepared copy of the child's own submission;
  write access to its scratch folder only; nothing else (not the kit's
  checkout, the fixtures, other submissions, home folders). Else a private
  mount namespace whose root holds only those folders (an unprivileged user
  namespace, or root). Else, as root, only the child's own uid (files that
  every user may read stay readable). Else nothing: a warning.
- **network**: no socket can be created (seccomp filter); no TCP bind or
  connect (Landlock ABI >= 4); a private network namespace where neither
  is available.
- **processes**: `RLIMIT_NPROC` counted in the child's own uid (root) or its
  own user namespace; signals stay inside the child's sandbox (Landlock
  ABI >= 6, or a uid of its own).

`AUTOGRADER_SANDBOX_DISABLE=landlock,namespaces,uid,seccomp` (any subset)
turns layers off, to see the fallbacks on a kernel that has them all.
"""
import ctypes
import errno
import json
import os
import platform
import resource
import signal
import stat
import sys
import sysconfig
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

DISABLE_ENV = "AUTOGRADER_SANDBOX_DISABLE"
LAYERS = ("landlock", "namespaces", "uid", "seccomp")
MAX_PROCS = 64  # processes and threads of one check, its own included

_libc = ctypes.CDLL(None, use_errno=True)
if sys.platform.startswith("linux"):  # elsewhere every layer probes as missing
    _libc.syscall.restype = ctypes.c_long
    _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def _syscall(nr: int, *args, what: str = "syscall") -> int:
    return _check(_libc.syscall(ctypes.c_long(nr), *args), what)


def _prctl(option: int, arg2: int = 0, what: str = "prctl") -> int:
    return _check(_libc.prctl(option, arg2, 0, 0, 0), what)


def disabled_layers() -> set:
    names = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    unknown = names - set(LAYERS)
    if unknown:
        raise ValueError(f"{DISABLE_ENV}: unknown layer(s) {sorted(unknown)}; known: {', '.join(LAYERS)}")
    return names


# ------------------------------------------------------------------ Landlock
_LL_CREATE, _LL_ADD, _LL_RESTRICT = 444, 445, 446  # the same on every architecture
_LL_VERSION = 1
_LL_PATH_BENEATH, _LL_NET_PORT = 1, 2

FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_CHAR, FS_MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
FS_MAKE_REG, FS_MAKE_SOCK, FS_MAKE_FIFO, FS_MAKE_BLOCK = 1 << 8, 1 << 9, 1 << 10, 1 << 11
FS_MAKE_SYM, FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 12, 1 << 13, 1 << 14, 1 << 15
_FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
WRITE = (READ | FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_DIR | FS_MAKE_REG
         | FS_MAKE_SYM | FS_MAKE_FIFO | FS_REFER | FS_TRUNCATE)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or off."""
    try:
        return _syscall(_LL_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(_LL_VERSION))
    except (OSError, AttributeError):
        return 0


def _handled_fs(abi: int) -> int:
    last = {1: FS_MAKE_SYM, 2: FS_REFER, 3: FS_TRUNCATE, 4: FS_TRUNCATE}.get(abi, FS_IOCTL_DEV)
    return (last << 1) - 1


def landlock_ruleset(abi: int, read: Sequence[str], write: Sequence[str], devices: Sequence[str]) -> int:
    """
    A Landlock ruleset (file descriptor) that allows reading (and running)
    beneath `read`, reading and writing beneath `write`, reading and writing
    the device files `devices`, and nothing else: no other file, no TCP bind
    or connect (ABI >= 4), no signal or abstract UNIX socket outside the
    sandbox (ABI >= 6). Built in the worker; the child restricts itself with
    `landlock_restrict`.
    """
    handled = _handled_fs(abi)
    attr = _RulesetAttr(handled, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
                        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    fd = _syscall(_LL_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0),
                  what="landlock_create_ruleset")
    try:
        for paths, access in ((read, READ), (write, WRITE), (devices, FS_READ_FILE | FS_WRITE_FILE)):
            for path in paths:
                try:
                    pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    mask = handled if stat.S_ISDIR(os.fstat(pfd).st_mode) else handled & _FS_FILE_RIGHTS
                    rule = _PathBeneath(access & mask, pfd)
                    _syscall(_LL_ADD, ctypes.c_int(fd), ctypes.c_int(_LL_PATH_BENEATH), ctypes.byref(rule),
                             ctypes.c_uint32(0), what=f"landlock_add_rule({path})")
                finally:
                    os.close(pfd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def landlock_restrict(ruleset_fd: int):
    """Confine this process (and everything it starts) to the ruleset."""
    _prctl(38, 1, what="PR_SET_NO_NEW_PRIVS")
    _syscall(_LL_RESTRICT, ctypes.c_int(ruleset_fd), ctypes.c_uint32(0), what="landlock_restrict_self")
    os.close(ruleset_fd)


# ------------------------------------------------------------------- seccomp
_SECCOMP_ARCH = {  # audit arch, x32 bit, {system call: number} denied
    "x86_64": (0xC000003E, 0x40000000, {"socket": 41, "io_uring_setup": 425, "ptrace": 101,
                                        "process_vm_readv": 310, "process_vm_writev": 311,
                                        "pidfd_getfd": 438}),
    "aarch64": (0xC00000B7, None, {"socket": 198, "io_uring_setup": 425, "ptrace": 117,
                                   "process_vm_readv": 270, "process_vm_writev": 271, "pidfd_getfd": 438}),
}


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def seccomp_supported() -> bool:
    return sys.platform.startswith("linux") and platform.machine() in _SECCOMP_ARCH


def install_seccomp():
    """
    seccomp filter: `socket()` (no network, no UNIX socket of another
    program), `io_uring_setup()` (it would bypass the filter), `ptrace()`,
    `process_vm_readv/writev()` and `pidfd_getfd()` (no reaching into other
    processes) fail with EACCES, as does every system call made through
    another architecture's calling convention.
    """
    arch, x32, denied = _SECCOMP_ARCH[platform.machine()]
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | errno.EACCES
    tests = ([(jge, x32)] if x32 is not None else []) + [(jeq, nr) for nr in denied.values()]
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, deny), (ld, 0, 0, 0)]
    for i, (op, k) in enumerate(tests):
        prog.append((op, len(tests) - i, 0, k))  # to the final deny
    prog += [(ret, 0, 0, allow), (ret, 0, 0, deny)]
    filters = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), filters)
    _prctl(38, 1, what="PR_SET_NO_NEW_PRIVS")
    _check(_libc.prctl(22, 2, ctypes.addressof(fprog), 0, 0), "PR_SET_SECCOMP")


# ---------------------------------------------------------------- namespaces
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2


def _mount(source, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def unshare(flags: int):
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def enter_user_namespace(net: bool, mounts: bool):
    """A user namespace of its own, with a network namespace (no interface
    up) and a mount namespace if asked; the same uid and gid inside when
    there are mounts to make (files created on its tmpfs need a mapped
    uid), else none mapped (its files still belong to the real uid)."""
    uid, gid = os.getuid(), os.getgid()
    unshare(CLONE_NEWUSER | (CLONE_NEWNET if net else 0) | (CLONE_NEWNS if mounts else 0))
    if not mounts:
        return
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


def _locked_flags(path: str) -> int:
    """Mount flags a read-only bind remount must keep (nosuid, nodev, noexec)."""
    st = os.statvfs(path)
    return ((MS_NOSUID if st.f_flag & os.ST_NOSUID else 0) | (MS_NODEV if st.f_flag & os.ST_NODEV else 0)
            | (MS_NOEXEC if st.f_flag & os.ST_NOEXEC else 0))


def _make_mountpoint(new_root: str, path: str, is_dir: bool):
    """Create `path` inside `new_root`, recreating symbolic links on the way
    (/lib64 -> usr/lib64, a .venv that links elsewhere, ...)."""
    parts = [p for p in path.split("/") if p]
    cur = ""
    for i, part in enumerate(parts):
        cur += "/" + part
        inside = new_root + cur
        if os.path.islink(cur):
            if not os.path.lexists(inside):
                os.symlink(os.readlink(cur), inside)
            _make_mountpoint(new_root, os.path.realpath(cur) + path[len(cur):], is_dir)
            return
        if os.path.lexists(inside):
            continue
        if i == len(parts) - 1 and not is_dir:
            os.close(os.open(inside, os.O_CREAT | os.O_WRONLY, 0o644))
        else:
            os.mkdir(inside, 0o755)


def enter_private_root(new_root: str, read: Sequence[str], write: Sequence[str], devices: Sequence[str]):
    """
    In a mount namespace of its own: make `new_root` (an empty folder) the
    root of a tmpfs holding only `read` (read-only), `write` and `devices`
    (bind mounts at their own paths), switch to it and detach the old root.
    """
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    binds = [(p, True) for p in read] + [(p, False) for p in list(write) + list(devices)]
    for path, read_only in binds:
        real = os.path.realpath(path)
        if not os.path.exists(real):
            continue
        is_dir = os.path.isdir(real)
        _make_mountpoint(new_root, path, is_dir)
        target = new_root + real
        if os.path.ismount(target):
            continue  # the same folder through another link
        _mount(real, target, None, MS_BIND | MS_REC)
        if read_only:
            _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _locked_flags(real))
    _mount(None, new_root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(new_root)
    _syscall(155 if platform.machine() == "x86_64" else 41, b".", b".", what="pivot_root")
    _check(_libc.umount2(b".", ctypes.c_int(MNT_DETACH)), "umount old root")
    os.chdir("/")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_capabilities():
    """No capability left (those a user namespace gives its creator)."""
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def switch_uid(uid: int):
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def can_switch_uid() -> bool:
    """True when this process may switch a child to another uid (root with
    CAP_SETUID/CAP_SETGID)."""
    if os.geteuid() != 0:
        return False
    pid = os.fork()
    if pid == 0:
        try:
            switch_uid(299999)
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def count_tasks(uid: int) -> int:
    """Processes and threads of `uid` (what RLIMIT_NPROC counts)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return total


# -------------------------------------------------------------------- policy
def _real(path) -> str:
    return os.path.realpath(os.fspath(path))


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def python_paths(protected: Sequence[str]) -> Dict[str, List[str]]:
    """
    What every child may read: the Python installation (standard library,
    site-packages, the folders of the loaded libraries), the system's
    libraries and programs, and a few device files. A folder that holds a
    protected one (the kit's checkout, the fixtures, the temporary folder,
    a home folder) is never granted.
    """
    candidates = []
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        for scheme_vars in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
            try:
                candidates.append(sysconfig.get_path(key, vars=scheme_vars or None))
            except KeyError:
                pass
    cwd = _real(os.getcwd())
    candidates += [p for p in sys.path if p and os.path.exists(p) and _real(p) != cwd]
    candidates.append(os.path.dirname(sys.executable))
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
                    candidates.append(os.path.dirname(parts[5].strip()))
    except OSError:
        pass
    candidates += ["/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/bin", "/bin",
                   "/usr/share/zoneinfo", "/sys/devices/system/cpu"]
    files = ["/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group",
             "/proc/cpuinfo", "/proc/meminfo", "/proc/stat"]
    devices = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]
    guarded = [_real(p) for p in protected] + ["/"]
    read, seen = [], set()
    for path in candidates:
        if not path or not os.path.exists(path):
            continue
        real = _real(path)
        if any(_within(g, real) for g in guarded) or path in seen:
            continue
        seen.add(path)
        read.append(path)
    # Keep only the outermost folders (a bind mount or a rule each), and every
    # spelling of them through links (/lib64 -> usr/lib64: a mount namespace
    # recreates the link).
    read.sort(key=lambda p: len(_real(p)))
    outer = []
    for path in read:
        real = _real(path)
        if not any(_within(real, _real(o)) and (real != _real(o) or path == real) for o in outer):
            outer.append(path)
    return {"read": outer, "files": [f for f in files if os.path.exists(f)],
            "devices": [d for d in devices if os.path.exists(d)]}


def protected_paths(extra: Sequence[str] = ()) -> List[str]:
    """Folders no child may read: the kit's checkout, the fixtures, the
    temporary folder, home folders, and `extra`."""
    from .fixtures import FIXTURE_DIR, ROOT

    paths = [str(ROOT), str(FIXTURE_DIR), tempfile.gettempdir(), os.path.expanduser("~"), "/home", "/root"]
    return [p for p in paths + list(extra) if p]


# ---------------------------------------------------------------------- plan
@dataclass
class Plan:
    """How children are confined; `describe()` is what every report states."""

    files: str = "none"            # "landlock", "mount namespace", "uid", "none"
    landlock_abi: int = 0
    userns: bool = False           # each child in a user namespace of its own
    netns: bool = False            # ... and a network namespace
    seccomp: bool = False          # socket() and io_uring_setup() denied
    uid_switch: bool = False       # root: a uid of its own per slot
    max_procs: int = MAX_PROCS
    nproc_scope: str = "none"      # "uid", "user namespace", "shared uid"
    notes: List[str] = field(default_factory=list)

    def describe(self) -> dict:
        if self.files == "landlock":
            files = (f"Landlock ABI {self.landlock_abi}: reads only Python, its libraries and the "
                     "submission's prepared copy, writes only its scratch folder")
        elif self.files == "mount namespace":
            files = ("private mount namespace: only Python, its libraries and the submission's prepared "
                     "copy (read-only) and its scratch folder exist")
        elif self.files == "uid":
            files = ("uid switch only: the child runs as a uid of its own, so files readable by every "
                     "user (a world-readable checkout of the kit) stay readable")
        else:
            files = "none: student code can read and write whatever the grader's user can"
        net = []
        if self.seccomp:
            net.append("no sockets (seccomp)")
        if self.files == "landlock" and self.landlock_abi >= 4:
            net.append("no TCP bind or connect (Landlock)")
        if self.netns:
            net.append("private network namespace")
        procs = f"at most {self.max_procs} processes and threads (RLIMIT_NPROC"
        procs += {"uid": ", own uid)", "user namespace": ", own user namespace)",
                  "shared uid": ", counted with the grader's other processes)"}.get(self.nproc_scope, ")")
        if self.nproc_scope == "root":
            procs = "not limited (RLIMIT_NPROC does not hold for root without the uid switch)"
        signals = []
        if self.uid_switch:
            signals.append("own uid")
        if self.files == "landlock" and self.landlock_abi >= 6:
            signals.append("signals scoped (Landlock)")
        out = {"files": files, "network": ", ".join(net) or "not confined", "processes": procs,
               "signals": ", ".join(signals) or "not confined",
               "layers": {"files": self.files, "landlock_abi": self.landlock_abi, "userns": self.userns,
                          "netns": self.netns, "seccomp": self.seccomp, "uid_switch": self.uid_switch,
                          "max_procs": None if self.nproc_scope == "root" else self.max_procs}}
        short = {"landlock": f"Landlock ABI {self.landlock_abi}", "mount namespace": "mount namespace",
                 "uid": "uid switch only", "none": "NONE"}[self.files]
        extra = [x for x, on in (("own uid", self.uid_switch and self.files != "uid"),
                                 ("no sockets", self.seccomp), ("no network namespace", False)) if on]
        out["summary"] = f"file isolation: {short}" + "".join(f", {x}" for x in extra) + (
            ", processes not limited" if self.nproc_scope == "root" else f", at most {self.max_procs} processes")
        if self.files == "none":
            out["warning"] = ("WARNING: no file isolation: student code ran with the grader's own rights "
                              "(it could read the reference solution and the fixtures, and write other "
                              "submissions' files). Grade on a kernel with Landlock, with unprivileged user "
                              "namespaces, or as root.")
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def confine_child(plan: Plan, policy: Dict[str, List[str]], uid: Optional[int] = None,
                  ruleset_fd: Optional[int] = None, new_root: Optional[str] = None):
    """
    Confine this (forked, single-threaded) child as `plan` says; `policy`:
    {"read": folders, "files": files to read, "devices": device files,
    "write": folders}. Raises OSError when a layer of the plan fails: the
    child must then not run student code.
    """
    read = policy["read"] + policy.get("files", []) + policy.get("submission", [])
    write, devices = policy["write"], policy.get("devices", [])
    if plan.userns:
        mounts = plan.files == "mount namespace"
        if mounts:  # to write its own uid_map (the siblings' seccomp filters deny ptrace)
            _prctl(4, 1, what="PR_SET_DUMPABLE")
        enter_user_namespace(net=plan.netns, mounts=mounts)
    elif os.geteuid() == 0 and (plan.files == "mount namespace" or plan.netns):
        unshare((CLONE_NEWNS if plan.files == "mount namespace" else 0) | (CLONE_NEWNET if plan.netns else 0))
    if plan.files == "mount namespace":
        enter_private_root(new_root, read, write, devices)
    limit = plan.max_procs
    if plan.nproc_scope == "shared uid":
        limit += count_tasks(os.getuid())
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
    if uid is not None:
        switch_uid(uid)
    elif plan.userns:
        drop_capabilities()
    _prctl(4, 0, what="PR_SET_DUMPABLE")  # no ptrace, /proc/PID/mem, pidfd_getfd from its siblings
    _prctl(38, 1, what="PR_SET_NO_NEW_PRIVS")
    if plan.files == "landlock":
        landlock_restrict(ruleset_fd)
    if plan.seccomp:
        install_seccomp()


# --------------------------------------------------------------------- probe
def _probe_child(plan: Plan, policy, secret: str, uid, ruleset_fd, new_root, write_fd) -> None:
    report = {}
    try:
        confine_child(plan, policy, uid=uid, ruleset_fd=ruleset_fd, new_root=new_root)
        report["confined"] = True
        try:
            with open(secret, "rb"):
                report["secret_readable"] = True
        except OSError:
            report["secret_readable"] = False
        scratch = policy["write"][0]
        with open(os.path.join(scratch, "probe.txt"), "w") as f:
            f.write("ok")
        for folder in policy["read"]:  # Python and the libraries: reachable and readable
            try:
                os.listdir(folder)
            except OSError as error:
                raise OSError(f"cannot read {folder} ({error.strerror}); the child's uid may "
                              "lack access to a folder above it") from None
        import email.mime.text  # noqa: F401 - a module nobody imported: the stdlib is readable
        report["python_ok"] = True
        import socket

        try:
            socket.socket().close()
            report["socket_blocked"] = False
        except OSError:
            report["socket_blocked"] = True
    except BaseException as error:  # noqa: BLE001
        report["error"] = f"{type(error).__name__}: {error}"
    os.write(write_fd, json.dumps(report).encode())
    os._exit(0)


def _run_probe(plan: Plan, policy_base, private: str, uid) -> dict:
    secret_dir = tempfile.mkdtemp(prefix="probe-secret-", dir=private)
    secret = os.path.join(secret_dir, "secret")
    with open(secret, "w") as f:
        f.write("secret")
    os.chmod(secret_dir, 0o755)
    os.chmod(secret, 0o644)  # readable by every uid: only confinement can hide it
    scratch = tempfile.mkdtemp(prefix="probe-scratch-", dir=private)
    new_root = tempfile.mkdtemp(prefix="probe-root-", dir=private)
    os.chmod(private, 0o711)
    for d in (scratch, new_root):
        if uid is not None:
            os.chown(d, uid, uid)
    policy = dict(policy_base, write=[scratch])
    ruleset_fd = None
    r, w = os.pipe()
    try:
        if plan.files == "landlock":
            ruleset_fd = landlock_ruleset(plan.landlock_abi, policy["read"] + policy["files"],
                                          policy["write"], policy["devices"])
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _probe_child(plan, policy, secret, uid, ruleset_fd, new_root, w)
        os.close(w)
        w = None
        data = b""
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
        os.waitpid(pid, 0)
        try:
            return json.loads(data or b"{}")
        except ValueError:
            return {"error": "the probe printed garbage"}
    except OSError as error:
        return {"error": f"{type(error).__name__}: {error}"}
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
        if ruleset_fd is not None:
            os.close(ruleset_fd)
        import shutil

        for d in (secret_dir, scratch, new_root):
            shutil.rmtree(d, ignore_errors=True)


def probe(policy_base, private: str, max_procs: int = MAX_PROCS) -> Plan:
    """
    The strongest plan that works here: each candidate is tried in a forked
    child that must fail to read a world-readable file outside its policy,
    write its scratch folder and import from the standard library.
    """
    off = disabled_layers()
    root = os.geteuid() == 0
    uid_ok = "uid" not in off and can_switch_uid()
    probe_uid = 299998 if uid_ok else None
    abi = 0 if "landlock" in off else landlock_abi()
    notes = []
    if "seccomp" not in off and not seccomp_supported():
        notes.append(f"no seccomp filter for {platform.machine()}")
    seccomp = "seccomp" not in off and seccomp_supported()

    def attempt(plan):
        result = _run_probe(plan, policy_base, private, probe_uid if plan.uid_switch else None)
        good = result.get("confined") and result.get("python_ok") and (
            plan.files in ("uid", "none") or result.get("secret_readable") is False)
        if plan.seccomp and good and not result.get("socket_blocked"):
            good = False
        if not good:
            notes.append(f"{plan.files}{' + seccomp' if plan.seccomp else ''}: "
                         f"{result.get('error') or 'did not confine (' + json.dumps(result) + ')'}")
        return good

    userns_ok = False
    if not root and "namespaces" not in off:
        userns_ok = attempt(Plan(files="none", userns=True, nproc_scope="user namespace"))
    can_netns = "namespaces" not in off and (root or userns_ok)
    own = dict(userns=userns_ok, max_procs=max_procs,
               nproc_scope="user namespace" if userns_ok else "root" if root else "shared uid")
    base = dict(own, uid_switch=True, nproc_scope="uid") if uid_ok else dict(own, uid_switch=False)
    candidates = []
    if abi:
        candidates.append(Plan(files="landlock", landlock_abi=abi, **base))
    if can_netns:
        candidates.append(Plan(files="mount namespace", **base))
    if abi and uid_ok:  # as root, Landlock without the uid switch (Python in a folder other uids cannot enter)
        candidates.append(Plan(files="landlock", landlock_abi=abi, **dict(own, uid_switch=False)))
    if uid_ok:
        candidates.append(Plan(files="uid", **base))
    candidates.append(Plan(files="none", **dict(own, uid_switch=False)))
    for plan in candidates:
        for with_seccomp in ([True, False] if seccomp else [False]):
            plan.seccomp = with_seccomp
            tcp_rules = plan.files == "landlock" and abi >= 4
            # No socket filter and no TCP rules: no network through a namespace.
            plan.netns = can_netns and not (with_seccomp or tcp_rules)
            if attempt(plan):
                plan.notes = notes
                return plan
    return Plan(notes=notes + ["no plan worked"])

"""
Where student code runs: never in the grader's own process.

The grading parent starts one *worker* (`python -m autograder.sandbox`). The
worker imports torch, the reference solution and the check inputs once (never
the expected outputs), then forks one *child* per (submission, check). Each
child, before it touches student code:

- gets its own session, stdin from /dev/null, stdout/stderr into a pipe that
  the worker drains (the first 2000 characters become feedback) and every
  other inherited descriptor closed (student prints cannot reach the
  grader's pipes);
- gets a memory limit (RLIMIT_AS), a CPU limit, a file-size limit and no core
  dumps; the worker kills it at the wall-clock timeout;
- is confined (`confine.py`; the plan is probed once when the worker starts
  and stated in every report): it reads only the Python installation and its
  submission's prepared copy, writes only its scratch folder, creates no
  socket and starts at most `--max-procs` processes (Landlock, else a private
  mount namespace, else the uid switch as root); when the grader runs as
  root it also switches to an unprivileged uid of its own (unique per slot,
  so children cannot signal the worker, the grader or each other);
- has the reference solution of the graded TODO removed from its memory, and
  the worker's line cache dropped.

Processes a child leaves behind are killed when it ends (the worker is their
subreaper; as root, everything of the slot's uid).

The child writes its outputs (plain tensors/lists/dicts) to a result file;
the worker passes them to the parent, which loads them with
`torch.load(weights_only=True)` and compares them with the expected outputs.
Only the parent computes scores.

Protocol (JSON lines): parent -> worker `{"id", "check", "dir", "timeout"}`;
worker -> parent `{"ready", "isolation"}` (`confine.Plan.describe()`),
`{"id", "started"}`, `{"id", "status", "detail", "printed", "result"}`
(result: base64 of `torch.save` bytes).
"""
import argparse
import base64
import ctypes
import gc
import json
import os
import resource
import select
import signal
import sys
import tempfile
import time

from .confine import (MAX_PROCS, _real, _within, can_switch_uid, confine_child, landlock_ruleset, probe,
                      protected_paths, python_paths)

MAX_RESULT_BYTES = 16 << 20
MAX_PRINTED = 2000


def _send(obj):
    data = (json.dumps(obj) + "\n").encode()
    view = memoryview(data)
    while view:
        n = os.write(1, view)
        view = view[n:]


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _kill_uid(uid: int):
    """Kill every process left behind under a sandbox uid (root only)."""
    for _ in range(3):
        found = False
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            if int(line.split()[1]) == uid:
                                os.kill(int(pid), signal.SIGKILL)
                                found = True
                            break
            except (OSError, ValueError):
                continue
        if not found:
            return
        time.sleep(0.05)


def _hide(ref, hides):
    """Remove the graded TODO's reference code from this (child) process."""
    for module_key, path in hides:
        obj = getattr(ref, module_key)
        *parents, attr = path.split(".")
        for p in parents:
            obj = getattr(obj, p, None)
        if obj is not None and attr in vars(obj):
            delattr(obj, attr)


CONFINE_FAILED = 4  # exit status of a child that could not be confined


def _child(task, ref, inputs, cap_fd, res_fd, confine, mem_limit):
    """Body of a forked child. Never returns. `confine`: (plan, policy, uid,
    ruleset_fd, new_root) for `confine.confine_child`."""
    code = 0
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(cap_fd, 1)
        os.dup2(cap_fd, 2)
        plan, policy, uid, ruleset_fd, new_root = confine
        keep = sorted({res_fd} | ({ruleset_fd} if ruleset_fd is not None else set()))
        last = 2
        for fd in keep + [65536]:
            os.closerange(last + 1, fd)
            last = fd
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        timeout = float(task.get("timeout", 60))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_RESULT_BYTES, MAX_RESULT_BYTES))
        cpu = int(timeout * 2 + 5)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        if mem_limit:
            limit = _vm_size() + mem_limit
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        scratch = policy["write"][0]
        for key in ("HOME", "TMPDIR", "MPLCONFIGDIR", "XDG_CACHE_HOME", "TORCH_HOME"):
            os.environ[key] = scratch
        try:
            confine_child(plan, policy, uid=uid, ruleset_fd=ruleset_fd, new_root=new_root)
        except BaseException as error:  # noqa: BLE001 - never run student code unconfined
            os.write(2, f"the sandbox could not confine this check ({error})".encode())
            os._exit(CONFINE_FAILED)
        import linecache

        linecache.clearcache()  # source lines the worker may have read
        sub_dir = task["dir"]
        os.chdir(sub_dir)
        sys.path.insert(0, sub_dir)
        sys.dont_write_bytecode = True

        from .checks import CHECKS
        from .fixtures import Ctx, run_cases, student_loaders

        check = CHECKS[task["check"]]
        own = inputs[task["check"]]
        inputs.clear()  # other checks' inputs hold reference intermediates: drop them
        _hide(ref, check.hides)
        load_common, load_tsd = student_loaders(sub_dir, ref)
        ctx = Ctx(ref, load_common, load_tsd, keep=check.keep)
        results = run_cases(check, ctx, own, student_dir=sub_dir)

        import io

        import torch

        buf = io.BytesIO()
        torch.save(results, buf)
        data = buf.getvalue()
        os.lseek(res_fd, 0, os.SEEK_SET)
        os.ftruncate(res_fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(res_fd, view):]
    except BaseException:  # noqa: BLE001 - reported by the worker (no result)
        code = 3
    finally:
        for stream in (sys.stdout, sys.stderr):  # what the student printed reaches the feedback
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        os._exit(code)


def can_drop_privileges() -> bool:
    """True when this process may switch a child to another uid (root with
    CAP_SETUID/CAP_SETGID): the children then cannot read root-only files."""
    return can_switch_uid()


def _kill_strays(running):
    """Kill and reap the worker's children that are not running checks:
    processes that checks left behind (the worker is their subreaper)."""
    me = str(os.getpid())
    for _ in range(5):
        strays = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) in running:
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = f.read().rsplit(")", 1)[1].split()[1]
            except (OSError, IndexError):
                continue
            if ppid == me:
                strays.append(int(pid))
        if not strays:
            return
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in strays:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = {signal.SIGSEGV: "segmentation fault", signal.SIGKILL: "killed (out of memory?)",
                signal.SIGXCPU: "CPU time limit", signal.SIGABRT: "aborted",
                signal.SIGBUS: "bus error", signal.SIGFPE: "arithmetic error"}.get(sig, "")
        return f"crashed with signal {sig}" + (f" ({name})" if name else "")
    return f"exited with status {os.WEXITSTATUS(status)} before returning its outputs (os._exit?)"


def worker_main(argv=None):
    parser = argparse.ArgumentParser(description="autograder sandbox worker (internal)")
    parser.add_argument("--fixtures", required=True)
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--mem-limit-mb", type=int, default=2048)
    parser.add_argument("--max-procs", type=int, default=MAX_PROCS)
    parser.add_argument("--protect", action="append", default=[],
                        help="a folder no child may read (besides the kit, the fixtures, temp and homes)")
    args = parser.parse_args(argv)

    try:  # PR_SET_PDEATHSIG: die with the grading parent
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:  # noqa: BLE001
        pass
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    import torchvision  # noqa: F401 - warm import for the children

    from . import checks, hooks  # noqa: F401 - children cannot read the package's files
    from .fixtures import load_reference

    fixtures = os.path.abspath(args.fixtures)
    ref = load_reference(os.path.join(fixtures, "reference"))
    inputs = torch.load(os.path.join(fixtures, "inputs.pt"), weights_only=True)
    private = tempfile.mkdtemp(prefix="autograder-worker-")
    os.chmod(private, 0o700)
    policy_base = python_paths(protected_paths([fixtures, private] + args.protect))
    plan = probe(policy_base, private, max_procs=args.max_procs)
    os.chmod(private, 0o711)  # children (another uid) reach their own root folder
    isolation = plan.describe()
    if isolation.get("warning"):
        print(f"autograder: {isolation['warning']}", file=sys.stderr)
    if os.geteuid() == 0 and not plan.uid_switch:
        print("autograder: cannot switch children to another uid; they run as root", file=sys.stderr)
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: leftovers come back here
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: children cannot ptrace the worker
    uid_base = 300000 + (os.getpid() % 100000) * 16
    roots = {}
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    gc.collect()
    gc.freeze()  # children start with an empty young generation: no slow collections
    _send({"ready": True, "isolation": isolation})

    buf = b""
    pending, running, captured = [], {}, {}
    free_slots = list(range(args.slots))
    eof = False
    while not (eof and not pending and not running):
        timeout = 0.01 if running else (None if not pending else 0)
        cap_fds = {entry[2]: pid for pid, entry in running.items()}
        watch = ([] if eof else [0]) + list(cap_fds)
        ready = select.select(watch, [], [], timeout)[0] if watch else []
        for fd in ready:
            if fd in cap_fds:
                _drain(fd, captured[fd])
        if not eof:
            if 0 in ready:
                chunk = os.read(0, 65536)
                if not chunk:
                    eof = True
                    pending.clear()  # the parent is gone or done: queued work is void
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        pending.append(json.loads(line))
        while pending and free_slots:
            task = pending.pop(0)
            slot = free_slots.pop(0)
            uid = uid_base + slot if plan.uid_switch else None
            scratch = tempfile.mkdtemp(prefix="autograder-scratch-")
            if uid is not None:
                os.chown(scratch, uid, uid)
            if slot not in roots and plan.files == "mount namespace":
                roots[slot] = tempfile.mkdtemp(prefix=f"root{slot}-", dir=private)
                os.chmod(roots[slot], 0o755)
            policy = dict(policy_base, submission=[task["dir"]], write=[scratch])
            try:
                exposed = [p for p in policy_base["read"] if _within(_real(task["dir"]), _real(p))]
                if exposed:
                    raise OSError(f"the submission's folder is inside {exposed[0]}, which every child reads")
                ruleset = None
                if plan.files == "landlock":
                    ruleset = landlock_ruleset(plan.landlock_abi, policy["read"] + policy["files"]
                                               + policy["submission"], policy["write"], policy["devices"])
            except OSError as error:
                _rmtree(scratch)
                free_slots.append(slot)
                _send({"id": task["id"], "started": True})
                _send({"id": task["id"], "status": "error", "printed": "",
                       "detail": f"was not run: the sandbox could not confine it ({error})"})
                continue
            cap_r, cap_w = os.pipe()
            os.set_blocking(cap_r, False)
            res = tempfile.TemporaryFile(dir=private)
            pid = os.fork()
            if pid == 0:
                _child(task, ref, inputs, cap_w, res.fileno(), (plan, policy, uid, ruleset, roots.get(slot)),
                       args.mem_limit_mb << 20)
            os.close(cap_w)
            if ruleset is not None:
                os.close(ruleset)
            captured[cap_r] = bytearray()
            _send({"id": task["id"], "started": True})
            running[pid] = (task, slot, cap_r, res, uid, scratch, time.monotonic())
        for pid in list(running):
            task, slot, cap_r, res, uid, scratch, t0 = running[pid]
            done, status = os.waitpid(pid, os.WNOHANG)
            timed_out = False
            if not done:
                if time.monotonic() - t0 <= float(task.get("timeout", 60)):
                    continue
                timed_out = True
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                os.kill(pid, signal.SIGKILL) if _alive(pid) else None
                _, status = os.waitpid(pid, 0)
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            if uid is not None:
                _kill_uid(uid)
            del running[pid]
            _kill_strays(running)
            _drain(cap_r, captured[cap_r])
            printed = bytes(captured.pop(cap_r)[: MAX_PRINTED + 1]).decode("utf-8", "replace")
            os.close(cap_r)
            res.seek(0, os.SEEK_END)
            size = res.tell()
            res.seek(0)
            reply = {"id": task["id"], "printed": printed, "elapsed": round(time.monotonic() - t0, 3)}
            if timed_out:
                reply.update(status="timeout", detail=f"did not finish within {task.get('timeout')} s "
                             "(infinite loop? very slow code?)")
            elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == CONFINE_FAILED:
                reply.update(status="error", printed="",
                             detail=f"was not run: {printed.strip() or 'the sandbox could not confine it'}")
            elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and 0 < size <= MAX_RESULT_BYTES:
                reply.update(status="ok", result=base64.b64encode(res.read()).decode())
            elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                reply.update(status="error", detail="produced no outputs (too large?)")
            else:
                reply.update(status="crashed", detail=_describe_exit(status))
            res.close()
            _rmtree(scratch)
            free_slots.append(slot)
            _send(reply)
    _rmtree(private)


def _drain(fd, keep: bytearray):
    """Read what a child printed; keep the start, drop the rest."""
    for _ in range(256):
        try:
            chunk = os.read(fd, 1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if not chunk:
            return
        if len(keep) <= MAX_PRINTED:
            keep += chunk[: MAX_PRINTED + 1 - len(keep)]


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _rmtree(path):
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    worker_main()

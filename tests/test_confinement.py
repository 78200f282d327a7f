"""
Confinement of submissions: reading a submission never follows a link
(`autograder/submission.py`), the layers of `autograder/confine.py` on their
own, and the hostile corpus (`tests/submissions/hostile.py`) graded through
the CLI as the current user (root in CI), as an ordinary user that the test
creates (when it runs as root), and with layers turned off to see the
fallbacks. Every case must get its expected score, print "blocked ..." for
each attempt, leak no marker, write nothing outside its scratch folder,
reach no listening socket and leave no process behind.
"""
import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from autograder import confine, fixtures, manifest
from autograder.checks import CHECK_NAMES, CHECKS
from autograder.release import make_release
from autograder.submission import MAX_FILE_BYTES, read_graded_files

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent / "submissions"))
import corpus  # noqa: E402
import hostile  # noqa: E402

IS_ROOT = os.geteuid() == 0
TIMEOUT = 30


# ------------------------------------------------------- reading, no links
@pytest.fixture
def reference_files(tmp_path):
    out = tmp_path / "reference"
    corpus.build({}, ROOT, out)
    return out


def test_symlinked_graded_file_is_refused_and_not_read(tmp_path, reference_files):
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(reference_files / "common.py", sub)
    os.symlink(ROOT / "two_stage_detector.py", sub / "two_stage_detector.py")
    files, problems = read_graded_files(sub)
    assert list(files) == ["common.py"]
    assert "two_stage_detector.py" in problems["two_stage_detector.py"]
    assert "symbolic link" in problems["two_stage_detector.py"]


def test_folder_link_is_not_entered(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    os.symlink(ROOT, sub / "work")
    assert read_graded_files(sub) == ({}, {})


def test_submission_that_is_a_link_is_refused(tmp_path, reference_files):
    os.symlink(reference_files, tmp_path / "link")
    with pytest.raises(FileNotFoundError, match="symbolic link"):
        read_graded_files(tmp_path / "link")
    os.symlink(reference_files / "common.py", tmp_path / "common.py")
    with pytest.raises(FileNotFoundError, match="symbolic link"):
        read_graded_files(tmp_path / "common.py")


def test_hard_links(tmp_path, reference_files):
    outside = tmp_path / "outside.py"
    shutil.copy(reference_files / "two_stage_detector.py", outside)
    sub = tmp_path / "sub"
    (sub / "old").mkdir(parents=True)
    os.link(outside, sub / "two_stage_detector.py")
    shutil.copy(reference_files / "common.py", sub / "common.py")
    os.link(sub / "common.py", sub / "old" / "common.py")  # both names inside: fine
    files, problems = read_graded_files(sub)
    assert list(files) == ["common.py"] and files["common.py"] == (reference_files / "common.py").read_bytes()
    assert "hard link" in problems["two_stage_detector.py"]


def test_fifo_and_device_are_refused_without_opening(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    os.mkfifo(sub / "common.py")  # opening it for reading would block
    if IS_ROOT:
        os.mknod(sub / "two_stage_detector.py", 0o644 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero
    t0 = time.monotonic()
    files, problems = read_graded_files(sub)
    assert time.monotonic() - t0 < 5 and files == {}
    assert "common.py is a FIFO" in problems["common.py"]
    if IS_ROOT:
        assert "two_stage_detector.py is a character device" in problems["two_stage_detector.py"]


def test_oversized_file_is_refused(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "common.py").write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    files, problems = read_graded_files(sub)
    assert files == {} and "common.py is larger than" in problems["common.py"]


def test_zip_entries_that_are_links_or_devices_are_refused(tmp_path, reference_files):
    zpath = tmp_path / "upload.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for name, kind in (("two_stage_detector.py", stat.S_IFLNK), ("common.py", stat.S_IFCHR)):
            info = zipfile.ZipInfo(f"a4/{name}")
            info.create_system = 3
            info.external_attr = (kind | 0o644) << 16
            zf.writestr(info, str(ROOT / name))
        zf.write(reference_files / "common.py", "deeper/a4/common.py")  # deeper: not used
    files, problems = read_graded_files(zpath)
    assert files == {}
    assert "symbolic link" in problems["two_stage_detector.py"] and "a4/two_stage_detector.py" in \
        problems["two_stage_detector.py"]
    assert "character device" in problems["common.py"]


def test_zip_entry_larger_than_it_says_is_refused(tmp_path):
    zpath = tmp_path / "upload.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("common.py", b"#" * (MAX_FILE_BYTES + 10))
    # Forge the sizes in the central directory: 10 bytes claimed.
    data = bytearray(zpath.read_bytes())
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (10).to_bytes(4, "little")
    zpath.write_bytes(bytes(data))
    files, problems = read_graded_files(zpath)
    assert files == {} and "common.py" in problems["common.py"], problems  # never used, named


# -------------------------------------------------------- confine, layers
def _in_child(body, *args):
    """Run `body(*args)` in a forked child; returns what it returned (JSON)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = body(*args)
        except BaseException as error:  # noqa: BLE001
            out = {"error": f"{type(error).__name__}: {error}"}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def _attempts(secret, scratch, inside):
    out = {}
    for name, fn in (("read secret", lambda: open(secret).read()),
                     ("list secret folder", lambda: os.listdir(os.path.dirname(secret))),
                     ("read inside", lambda: open(inside).read()),
                     ("write inside", lambda: open(inside, "a").write("x")),
                     ("write scratch", lambda: open(os.path.join(scratch, "f"), "w").write("x")),
                     ("tcp bind", lambda: socket.socket().bind(("127.0.0.1", 0))),
                     ("socketpair", lambda: socket.socketpair()[0].close()),
                     ("signal parent", lambda: os.kill(os.getppid(), 0))):
        try:
            fn()
            out[name] = "ok"
        except OSError as error:
            out[name] = type(error).__name__
    return out


@pytest.fixture
def places(tmp_path):
    secret_dir, allowed, scratch = tmp_path / "secret", tmp_path / "allowed", tmp_path / "scratch"
    for d in (secret_dir, allowed, scratch):
        d.mkdir()
    (secret_dir / "secret.txt").write_text("secret")
    (allowed / "inside.txt").write_text("inside")
    return str(secret_dir / "secret.txt"), str(scratch), str(allowed / "inside.txt"), str(allowed)


@pytest.mark.skipif(not confine.landlock_abi(), reason="this kernel has no Landlock")
def test_landlock_ruleset(places):
    secret, scratch, inside, allowed = places
    abi = confine.landlock_abi()
    policy = confine.python_paths([])

    def body():
        fd = confine.landlock_ruleset(abi, policy["read"] + [allowed], [scratch], policy["devices"])
        confine.landlock_restrict(fd)
        return _attempts(secret, scratch, inside)

    out = _in_child(body)
    assert out["read secret"] == out["list secret folder"] == "PermissionError", out
    assert out["read inside"] == "ok" and out["write inside"] == "PermissionError", out
    assert out["write scratch"] == "ok" and out["socketpair"] == "ok", out
    if abi >= 4:
        assert out["tcp bind"] == "PermissionError", out
    if abi >= 6:
        assert out["signal parent"] == "PermissionError", out


@pytest.mark.skipif(not confine.seccomp_supported(), reason="no seccomp filter for this architecture")
def test_seccomp_denies_sockets_and_ptrace_only(places):
    secret, scratch, inside, _ = places

    def body():
        import ctypes

        confine.install_seccomp()
        out = _attempts(secret, scratch, inside)
        r, w = os.pipe()
        out["pipe"] = "ok" if os.write(w, b"x") == 1 else "no"
        try:
            socket.socket(socket.AF_UNIX).close()
        except OSError as error:
            out["unix socket"] = type(error).__name__
        libc = ctypes.CDLL(None, use_errno=True)
        out["ptrace"] = libc.ptrace(0x4206, os.getppid(), 0, 0), ctypes.get_errno()  # PTRACE_SEIZE
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        out["fork"] = "ok" if os.waitpid(pid, 0)[0] == pid else "no"
        return out

    out = _in_child(body)
    assert out["tcp bind"] == out["unix socket"] == "PermissionError", out
    assert out["ptrace"] == [-1, 13], out  # EACCES from the filter (not EPERM)
    assert out["read secret"] == out["socketpair"] == out["pipe"] == out["fork"] == "ok", out


def test_private_root(places):
    """The mount-namespace fallback: nothing but the policy exists."""
    secret, scratch, inside, allowed = places
    policy = dict(confine.python_paths([os.path.dirname(secret)]), submission=[allowed], write=[scratch])
    new_root = tempfile.mkdtemp()

    def body():
        if IS_ROOT:
            confine.unshare(confine.CLONE_NEWNS)
        else:
            confine.enter_user_namespace(net=True, mounts=True)
        confine.enter_private_root(new_root, policy["read"] + policy["files"] + policy["submission"],
                                   policy["write"], policy["devices"])
        out = _attempts(secret, scratch, inside)
        import email.mime.text  # noqa: F401 - the standard library is there
        out["stdlib"] = "ok"
        out["/dev/null"] = "ok" if open("/dev/null", "w").write("x") == 1 else "no"
        return out

    try:
        out = _in_child(body)
    finally:
        os.rmdir(new_root)
    if "error" in out and not IS_ROOT:
        pytest.skip(f"no unprivileged user namespaces here: {out['error']}")
    assert out["read secret"] == "FileNotFoundError", out
    assert out["read inside"] == "ok" and out["write inside"] in ("OSError", "PermissionError"), out
    assert out["write scratch"] == out["stdlib"] == out["/dev/null"] == "ok", out


@pytest.mark.parametrize("off", ["", "landlock", "landlock,namespaces", "landlock,namespaces,uid"])
def test_probe_falls_back_and_says_so(monkeypatch, tmp_path, off):
    monkeypatch.setenv(confine.DISABLE_ENV, off)
    private = tempfile.mkdtemp(dir=tmp_path)
    policy = confine.python_paths(confine.protected_paths([private]))
    plan = confine.probe(policy, private)
    about = plan.describe()
    if not off and confine.landlock_abi():
        # Landlock unless the switched uid cannot reach Python (then a mount namespace).
        assert plan.files in ("landlock", "mount namespace"), about
    if off == "landlock":
        assert plan.files in ("mount namespace", "uid", "none") and plan.files != "landlock", about
    if "namespaces" in off:
        assert plan.files in ("uid", "none") and not plan.userns and not plan.netns, about
    if "uid" in off:
        assert plan.files == "none" and not plan.uid_switch, about
    if plan.files == "none":
        assert "WARNING: no file isolation" in about["warning"], about
    else:
        assert "warning" not in about
    assert about["summary"].startswith("file isolation: ")
    assert plan.seccomp == confine.seccomp_supported(), about


def test_unknown_layer_name_is_an_error(monkeypatch):
    monkeypatch.setenv(confine.DISABLE_ENV, "landlok")
    with pytest.raises(ValueError, match="unknown layer"):
        confine.disabled_layers()


# ------------------------------------------------------ the hostile corpus
def _world(base: Path, kit: Path, fixture_dir: Path, home: Path, owner=None) -> hostile.World:
    world = hostile.World(base=base, kit=kit, fixtures=fixture_dir, home=home)
    world.write_markers()
    world.listen()
    if owner is not None:
        os.chown(world.home, owner, owner)
    return world


def _build_batch(world: hostile.World, cases, corpus_cases=()):
    """A fresh uploads folder with `cases`, the reference and the victim."""
    world.batch = world.base / f"uploads-{time.monotonic_ns()}"
    world.batch.mkdir(parents=True)
    os.chmod(world.batch, 0o755)
    keys = {}
    names = [c["name"] for c in list(cases) + list(corpus_cases)]
    assert len(set(names)) == len(names), "two cases of the same name"
    for case in cases:
        out = hostile.build(case, world, world.kit, world.batch / case["name"])
        keys[case["name"]] = out.name
    for case in corpus_cases:
        corpus.build(case, world.kit, world.batch / case["name"])
        keys[case["name"]] = case["name"]
    corpus.build({}, world.kit, world.batch / "reference")
    make_release(world.batch / hostile.VICTIM, notebooks=False)
    world.victim_text = (world.batch / hostile.VICTIM / "two_stage_detector.py").read_text()
    return keys


def _grade(python, kit, world, env_extra=None, user=None, checks=None):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(world.home), "LANG": "C.UTF-8"}
    env.update(env_extra or {})
    out = world.base / f"report-{time.monotonic_ns()}.json"
    cmd = [str(python), "-m", "autograder", "grade", str(world.batch), "--jobs", "2",
           "--timeout", str(TIMEOUT), "--json", str(out)] + (["--checks", *checks] if checks else [])
    kwargs = dict(user=user, group=user, extra_groups=[]) if user is not None else {}
    if user is not None:
        os.chmod(world.base, 0o777)  # the report
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=kit, env=env, capture_output=True, text=True, timeout=1800, **kwargs)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    text = out.read_text()
    report = {s["submission"]: s for s in json.loads(text)}
    print(f"graded {len(report)} submissions in {elapsed:.0f} s (wall clock, shared cores)")
    return report, text, proc


def _feedback(sub, check):
    return next(c["feedback"] for c in sub["checks"] if c["name"] == check)


def _bombs():
    """Processes left by the fork bomb (named agbomb)."""
    left = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and Path(f"/proc/{pid}/comm").read_text().strip() == "agbomb":
                left.append(int(pid))
        except OSError:
            continue
    return left


def _verify(report, text, proc, world, cases, keys, checks=None, corpus_cases=()):
    """Every case graded as expected, nothing leaked, written or reached."""
    names = checks or CHECK_NAMES
    isolation = next(iter(report.values()))["isolation"]
    layers = isolation["layers"]
    assert layers["files"] in ("landlock", "mount namespace"), isolation
    assert f"sandbox: {isolation['summary']}" in proc.stdout
    signals = layers["uid_switch"] or (layers["files"] == "landlock" and layers["landlock_abi"] >= 6)
    may_leak = set() if signals else {"signal the worker"}
    bad = {}
    for case in list(cases) + list(corpus_cases):
        sub = report[keys[case["name"]]]
        assert {c["name"] for c in sub["checks"]} == set(names) and sub["isolation"] == isolation
        got = {c["name"]: c["score"] for c in sub["checks"]}
        want = {n: CHECKS[n].points * case["expect"].get(n, 1.0) for n in names}
        wrong = {n: (got[n], want[n], _feedback(sub, n)[:300]) for n in names if abs(got[n] - want[n]) > 0.01}
        for check, words in case.get("feedback", {}).items():
            if check in names and words not in _feedback(sub, check):
                wrong[check + " feedback"] = _feedback(sub, check)[:300]
        for check, attempts in case.get("blocked", {}).items():
            if check not in names:
                continue
            fb = _feedback(sub, check)
            missing = [a for a in attempts if f"blocked {a}:" not in fb and a not in may_leak]
            if missing:
                wrong[check + " not blocked"] = (missing, fb[-1500:])
        leaks = [line for c in sub["checks"] for line in c["feedback"].splitlines() if "LEAK" in line]
        leaks = [line for line in leaks if not any(f"LEAK {a}:" in line for a in may_leak)]
        if leaks:
            wrong["leaks"] = leaks[:5]
        if case.get("forks") in names:
            counts = [int(n) for n in re.findall(r"forked (\d+)", _feedback(sub, case["forks"]))]
            if not counts or (layers["max_procs"] and max(counts) >= layers["max_procs"]):
                wrong["fork bomb"] = counts
        if wrong:
            bad[case["name"]] = wrong
    assert not bad, json.dumps(bad, indent=1)[:6000]
    victim = report[hostile.VICTIM]
    assert all(c["score"] == 0 for c in victim["checks"]), "another submission's copy was overwritten"
    assert (world.batch / hostile.VICTIM / "two_stage_detector.py").read_text() == world.victim_text
    ref = report["reference"]
    assert ref["score"] == sum(CHECKS[n].points for n in names)
    assert world.token not in text, "a marker's content reached the report"
    assert world.hacked_files() == [], "a write outside the submission succeeded"
    assert world.hits == {"tcp": 0, "udp": 0, "unix": 0, "abstract": 0}, world.hits
    assert _bombs() == [], "the fork bomb's processes outlived their check"


@pytest.fixture(scope="module")
def root_world():
    base = Path(tempfile.mkdtemp(prefix="hostile-"))
    os.chmod(base, 0o755)
    world = _world(base, ROOT, fixtures.ensure(), base / "home")
    yield world
    world.close()
    for path in world.hacked_files():  # only after a failure: leave nothing behind
        path.unlink()
    shutil.rmtree(base, ignore_errors=True)


def test_hostile_corpus_as_current_user(root_world):
    """As root in CI (Landlock or a mount namespace, plus a uid per slot), as
    the developer elsewhere."""
    keys = _build_batch(root_world, hostile.CASES)
    report, text, proc = _grade(sys.executable, ROOT, root_world)
    _verify(report, text, proc, root_world, hostile.CASES, keys)
    if not IS_ROOT and confine.landlock_abi():
        assert report["reference"]["isolation"]["layers"]["files"] == "landlock"


def test_fallbacks_without_landlock(root_world):
    """A kernel without Landlock: a mount namespace (unprivileged user
    namespace, or root) confines the same cases; the report says so."""
    checks = ["iou", "nms"]
    keys = _build_batch(root_world, hostile.CASES)
    report, text, proc = _grade(sys.executable, ROOT, root_world,
                                {confine.DISABLE_ENV: "landlock"}, checks=checks)
    isolation = report["reference"]["isolation"]
    if isolation["layers"]["files"] != "mount namespace":
        assert not IS_ROOT, isolation  # root always may; an ordinary user needs user namespaces
        pytest.skip(f"no user namespaces here either: {isolation}")
    assert "private mount namespace" in isolation["files"]
    _verify(report, text, proc, root_world, hostile.CASES, keys, checks=checks)


def test_no_file_isolation_warns(root_world):
    """Nothing but the uid switch (as root) or nothing at all: the weaker
    isolation is stated, and without any a warning goes to the console and
    into every report."""
    keys = _build_batch(root_world, [c for c in hostile.CASES if c["name"] in ("read_outside", "fixtures_via_module")])
    report, text, proc = _grade(sys.executable, ROOT, root_world,
                                {confine.DISABLE_ENV: "landlock,namespaces"}, checks=["iou", "nms"])
    isolation = report["reference"]["isolation"]
    outside = _feedback(report[keys["read_outside"]], "nms")
    assert isolation["layers"]["files"] in ("uid", "none"), isolation
    assert "LEAK outside marker" in outside  # world-readable: not hidden by either
    if isolation["layers"]["files"] == "uid":
        assert "uid switch only" in isolation["summary"] and "warning" not in isolation
        assert "blocked fixtures:" in _feedback(report[keys["fixtures_via_module"]], "iou")  # root-only files
    else:
        assert "WARNING: no file isolation" in proc.stderr
        assert isolation["warning"] in proc.stdout and "WARNING" in report["reference"]["isolation"]["warning"]


# ------------------------------------------------------ as an ordinary user
def _free_uid() -> int:
    for uid in range(61000, 62000):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise RuntimeError("no free uid")


@pytest.fixture(scope="module")
def user_world(gradescope_install):
    """An ordinary user (not in /etc/passwd: a bare uid) with a copy of the
    kit that it owns, as on an instructor's laptop: its fixtures are
    world-readable, only confinement hides them. Python is the fresh
    virtualenv of the Gradescope install (the kit's own may sit in a folder
    that other users cannot enter)."""
    if not IS_ROOT:
        pytest.skip("creating an ordinary user needs root; as one, the tests above are it")
    uid = _free_uid()
    base = Path(tempfile.mkdtemp(prefix="hostile-user-"))
    os.chmod(base, 0o755)
    kit = base / "kit"
    (kit / "autograder").mkdir(parents=True)
    for f in (ROOT / "autograder").glob("*.py"):
        shutil.copy(f, kit / "autograder" / f.name)
    for name in fixtures.REFERENCE_FILES + ["README.md"]:
        shutil.copy(ROOT / name, kit / name)
    (kit / "kit").mkdir()
    for name in manifest.KIT_PACKAGE:  # the comparison rule the grader imports
        shutil.copy(ROOT / name, kit / name)
    for p in [kit, *kit.rglob("*")]:
        os.chown(p, uid, uid)
    world = _world(base, kit, kit / "autograder" / "fixtures", base / "home", owner=uid)
    world.uid, world.python = uid, gradescope_install["python"]
    yield world
    world.close()
    for path in world.hacked_files():
        path.unlink()
    shutil.rmtree(base, ignore_errors=True)


def test_corpus_as_an_ordinary_user(user_world):
    """The hostile cases and every case of the corpus, graded by an ordinary
    user: the same results as the current user (root in CI)."""
    keys = _build_batch(user_world, hostile.CASES, corpus.CASES)
    report, text, proc = _grade(user_world.python, user_world.kit, user_world, user=user_world.uid)
    layers = report["reference"]["isolation"]["layers"]
    assert not layers["uid_switch"]
    if confine.landlock_abi():
        assert layers["files"] == "landlock", report["reference"]["isolation"]
    assert (user_world.fixtures / "expected.pt").stat().st_mode & 0o004  # world-readable
    _verify(report, text, proc, user_world, hostile.CASES, keys, corpus_cases=corpus.CASES)


def test_ordinary_user_without_landlock(user_world):
    """Landlock off: unprivileged user and mount namespaces confine the
    same cases."""
    checks = ["iou", "nms"]
    keys = _build_batch(user_world, hostile.CASES)
    report, text, proc = _grade(user_world.python, user_world.kit, user_world,
                                {confine.DISABLE_ENV: "landlock"}, user=user_world.uid, checks=checks)
    isolation = report["reference"]["isolation"]
    if isolation["layers"]["files"] != "mount namespace":
        pytest.skip(f"no unprivileged user namespaces on this machine: {isolation}")
    assert isolation["layers"]["userns"] and "private mount namespace" in isolation["files"]
    _verify(report, text, proc, user_world, hostile.CASES, keys, checks=checks)


def test_ordinary_user_without_isolation_warns(user_world):
    """Neither Landlock nor namespaces, and no root: nothing confines the
    files, which the console and every report say."""
    keys = _build_batch(user_world, [c for c in hostile.CASES if c["name"] == "fixtures_via_module"])
    report, text, proc = _grade(user_world.python, user_world.kit, user_world,
                                {confine.DISABLE_ENV: "landlock,namespaces"}, user=user_world.uid,
                                checks=["iou"])
    isolation = report["reference"]["isolation"]
    assert isolation["layers"]["files"] == "none", isolation
    assert "WARNING: no file isolation" in proc.stderr and isolation["warning"] in proc.stdout
    assert all(sub["isolation"]["warning"] == isolation["warning"] for sub in report.values())
    # Honestly weak: the world-readable fixtures are read (the case still scores 0).
    assert "LEAK fixtures" in _feedback(report[keys["fixtures_via_module"]], "iou")


# --------------------------------------------------------- every report
def test_notebook_grade_states_the_sandbox(tmp_path):
    corpus.build({}, ROOT, tmp_path / "sub")
    code = ("from autograder.notebook import grade\n"
            f"print(grade('iou', submission={str(tmp_path / 'sub')!r}))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    points = CHECKS["iou"].points
    assert f"iou: {points:g} / {points:g} (passed)" in proc.stdout
    assert "sandbox: file isolation: " in proc.stdout

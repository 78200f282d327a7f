"""
The grading parent: prepares submissions, drives the sandbox worker, compares
outputs with the reference outputs and writes the scores (incrementally).
"""
import atexit
import base64
import csv
import io
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from . import fixtures, transplant
from .check_base import verdict
from .checks import BLOCKS, CHECKS, CHECK_NAMES
from .confine import DISABLE_ENV
from .manifest import GRADED_FILES, GRADING_RUNTIME_FILES
from .submission import read_graded_files

GRADED = list(GRADED_FILES)


def check_file(name: str) -> str:
    return CHECKS[name].file


# ----------------------------------------------------------- submissions
def prepare(submission: Path, dest: Path) -> Dict[str, str]:
    """
    Write the graded files of a submission (folder or .zip, files anywhere
    inside; see `submission.read_graded_files`) into `dest`, plus the
    provided files they import. Each graded file is the kit's own file with
    the student's TODO blocks and additions transplanted in (`transplant.py`;
    what was done goes to `dest/.transplant.json`). Missing files become the
    released (empty) version so the other file still imports. Returns {file
    name: problem} for missing or unusable files.
    """
    files, problems = read_graded_files(submission)
    dest.mkdir(parents=True, exist_ok=True)
    ref_dir = fixtures.FIXTURE_DIR / "reference"
    from .release import strip_solutions

    texts, infos = transplant.transplant_files(files, ref_dir, BLOCKS)
    transplant.write_info(dest, infos)
    for name in GRADED:
        if name in texts:
            (dest / name).write_text(texts[name])
        else:
            problems.setdefault(name, f"{name} is missing from the submission")
            (dest / name).write_text(strip_solutions((ref_dir / name).read_text(), name))
    for name in GRADING_RUNTIME_FILES:
        shutil.copyfile(ref_dir / name, dest / name)
    os.chmod(dest, 0o755)
    for p in dest.iterdir():
        os.chmod(p, 0o644)
    return problems


# ---------------------------------------------------------------- worker
class Worker:
    """The sandbox worker process, seen from the parent."""

    def __init__(self, slots: int, mem_limit_mb: int, fixture_dir: Path):
        env = {k: v for k, v in os.environ.items()
               if k in ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR", DISABLE_ENV)}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1",
                   PYTHONPATH=str(Path(__file__).resolve().parent.parent),
                   PYTHONWARNINGS="ignore")
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autograder.sandbox", "--fixtures", str(fixture_dir),
             "--slots", str(slots), "--mem-limit-mb", str(mem_limit_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            env=env, cwd=tempfile.gettempdir(), start_new_session=True)
        self.buf = b""
        msg = self.read(timeout=300)
        if not msg or not msg.get("ready"):
            raise RuntimeError("the sandbox worker did not start:\n" + self.stderr())
        self.isolation = msg.get("isolation") or {}

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-3000:]

    def submit(self, task: dict):
        self.proc.stdin.write((json.dumps(task) + "\n").encode())
        self.proc.stdin.flush()

    def read(self, timeout: float) -> Optional[dict]:
        """Next message, None on EOF; raises TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return None
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        try:
            os.killpg(self.proc.pid, 9)
        except OSError:
            pass
        self.proc.wait()


# ---------------------------------------------------------------- scoring
def score_check(name: str, reply: dict, expected: dict) -> dict:
    """Turn the worker's reply for one check into a scored result."""
    check = CHECKS[name]
    result = {"name": name, "file": check.file, "todo": check.todo, "max_score": check.points,
              "score": 0.0, "status": "failed", "feedback": "", "cases": {}}
    printed = reply.get("printed") or ""
    if reply.get("status") != "ok":
        result["status"] = reply.get("status", "error")
        result["feedback"] = f"{name}: your code {reply.get('detail', 'failed')}"
        result["cases"] = {case: "not run" for case in expected}
    else:
        try:
            outputs = torch.load(io.BytesIO(base64.b64decode(reply["result"])), weights_only=True)
            if not isinstance(outputs, dict):
                raise ValueError("not a dict")
        except Exception as error:  # noqa: BLE001
            outputs = {}
            result["feedback"] = f"{name}: unreadable outputs ({type(error).__name__})"
        lines, passed, accepted = [], 0, []
        notes = outputs.get("__notes__", {}).get("value") if isinstance(outputs.get("__notes__"), dict) else None
        stood_in = outputs.get("__stood_in__")
        if isinstance(stood_in, dict) and isinstance(stood_in.get("value"), list):
            result["stood_in"] = stood_in["value"]  # failed top-level statements (transplant.py)
        for index, (case, exp) in enumerate(expected.items()):
            ok, msg, note = verdict(check, case, outputs.get(case), exp,
                                    lambda case=case: _inputs_for(name, case), others_passed=passed == index)
            if ok:
                passed += 1
                result["cases"][case] = "ok" + (f" ({note})" if note else "")
                if note:
                    accepted.append(f"case {case!r}: {note}")
                continue
            result["cases"][case] = msg
            lines.append(f"case {case!r}: {msg}")
        n = len(expected)
        result["score"] = round(check.points * passed / n, 3)
        result["status"] = "passed" if passed == n else ("partial" if passed else "failed")
        if notes:
            lines += [f"note: {note}" for note in notes]
        if not lines:
            lines = ["all cases pass" if accepted else "all cases match the reference"]
        lines += [f"note: {a}" for a in accepted]
        result["feedback"] = result["feedback"] or "\n".join(lines)
    if printed.strip():
        more = "..." if len(printed) > 2000 else ""
        result["feedback"] += f"\nyour code printed:\n{printed[:2000]}{more}"
    return result


_INPUTS = {}


def _inputs_for(name, case):
    """Check inputs, loaded lazily in the parent for the mistake hints."""
    where = _INPUTS.get("dir", fixtures.FIXTURE_DIR)
    if _INPUTS.get("loaded") != where:
        _INPUTS["all"] = torch.load(Path(where) / "inputs.pt", weights_only=True)
        _INPUTS["loaded"] = where
    return _INPUTS["all"][name][case]


def missing_result(name: str, problem: str) -> dict:
    check = CHECKS[name]
    return {"name": name, "file": check.file, "todo": check.todo, "max_score": check.points,
            "score": 0.0, "status": "missing", "feedback": problem, "cases": {}}


# ---------------------------------------------------------------- driver
class Report:
    """Scores of many submissions, written out after every graded check."""

    def __init__(self, json_path=None, jsonl_path=None, on_check=None):
        self.subs: Dict[str, dict] = {}
        self.infos: Dict[str, dict] = {}
        self.order: List[str] = []
        # How the children were confined (`confine.Plan.describe()`), once a worker ran.
        self.isolation: dict = {"summary": "no student code ran"}
        self.json_path, self.jsonl_path, self.on_check = json_path, jsonl_path, on_check

    def add_submission(self, key, path):
        self.subs[key] = {"submission": key, "path": str(path), "score": 0.0,
                          "max_score": sum(c.points for c in CHECKS.values()), "checks": {}}
        self.order.append(key)

    def set_transplant(self, key, infos: dict):
        """What was transplanted into the submission's prepared files."""
        self.infos[key] = infos
        self.subs[key]["transplant"] = transplant.summary(infos)
        self.subs[key]["stood_in"] = []

    def add(self, key, result):
        sub = self.subs[key]
        result = transplant.annotate_result(result, self.infos.get(key, {}))
        for entry in result.pop("stood_in", None) or []:
            if entry not in sub.setdefault("stood_in", []):
                sub["stood_in"].append(entry)
        sub["checks"][result["name"]] = result
        sub["score"] = round(sum(r["score"] for r in sub["checks"].values()), 3)
        if self.jsonl_path:
            with open(self.jsonl_path, "a") as f:
                f.write(json.dumps({"submission": key, **result}) + "\n")
        if self.json_path:
            self.write_json(self.json_path)
        if self.on_check:
            self.on_check(self, key, result)

    def as_list(self):
        out = []
        for key in self.order:
            sub = dict(self.subs[key])
            sub["checks"] = [sub["checks"][n] for n in CHECK_NAMES if n in sub["checks"]]
            sub["isolation"] = self.isolation
            sub["complete"] = len(sub["checks"]) == len(CHECK_NAMES)
            out.append(sub)
        return out

    def write_json(self, path):
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(self.as_list(), f, indent=1)
        os.replace(tmp, path)

    def write_csv(self, path):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["submission", "score", "max_score"] + CHECK_NAMES + ["transplant"])
            for sub in self.as_list():
                by = {c["name"]: c["score"] for c in sub["checks"]}
                w.writerow([sub["submission"], sub["score"], sub["max_score"]] + [by.get(n, "") for n in CHECK_NAMES]
                           + ["; ".join(transplant.describe(sub))])


def grade(submissions, jobs: int = 2, timeout: float = 60.0, mem_limit_mb: int = 2048,
          checks: Optional[List[str]] = None, json_path=None, jsonl_path=None, on_check=None,
          fixture_dir=None, keep_worker: bool = False) -> Report:
    """
    Grade `submissions` (folders, .zip files or graded .py files) with
    `jobs` checks running at once. Returns the Report; writes `json_path`
    (rewritten after every check) and `jsonl_path` (one line per check).
    `keep_worker`: keep the sandbox worker (torch imported) for the next call
    (notebooks grade one check per cell).
    """
    fixture_dir = fixtures.ensure(fixture_dir)
    expected = fixtures.load_expected(fixture_dir)
    _INPUTS["dir"] = fixture_dir
    names = [n for n in CHECK_NAMES if checks is None or n in checks]
    unknown = set(checks or []) - set(CHECK_NAMES)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; known: {CHECK_NAMES}")
    report = Report(json_path, jsonl_path, on_check)
    if jsonl_path:
        open(jsonl_path, "w").close()
    workdir = Path(tempfile.mkdtemp(prefix="autograder-subs-"))
    os.chmod(workdir, 0o711)
    tasks, keys = {}, []
    try:
        for i, sub in enumerate(submissions):
            sub = Path(sub)
            name = Path(os.path.abspath(sub)).name or str(sub)  # a link's own name
            key = name if name not in report.subs else f"{name}#{i}"
            report.add_submission(key, sub)
            dest = workdir / f"s{i}"
            try:
                problems = prepare(sub, dest)
            except Exception as error:  # noqa: BLE001
                problems = {f: f"cannot read the submission: {error}" for f in GRADED}
            report.set_transplant(key, transplant.read_info(dest))
            for name in names:
                file = check_file(name)
                if file in problems:
                    report.add(key, missing_result(name, problems[file]))
                else:
                    tid = len(tasks)
                    tasks[tid] = {"id": tid, "check": name, "dir": str(dest), "timeout": timeout, "key": key}
        _run_tasks(tasks, report, expected, jobs, timeout, mem_limit_mb, fixture_dir, keep_worker)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


_KEPT: Dict[tuple, Worker] = {}


def _run_tasks(tasks, report, expected, jobs, timeout, mem_limit_mb, fixture_dir, keep_worker=False):
    todo = dict(tasks)
    restarts = 0
    key = (jobs, mem_limit_mb, str(fixture_dir))
    while todo:
        worker = _KEPT.pop(key, None) if keep_worker else None
        if worker is None or worker.proc.poll() is not None:
            worker = Worker(jobs, mem_limit_mb, fixture_dir)
            if worker.isolation.get("warning"):
                print(f"autograder: {worker.isolation['warning']}", file=sys.stderr)
        report.isolation = worker.isolation
        started = set()
        for tid in sorted(todo):
            worker.submit({k: v for k, v in todo[tid].items() if k != "key"})
        try:
            while todo:
                try:
                    msg = worker.read(timeout=timeout * 2 + 60)
                except TimeoutError:
                    msg = None
                if msg is None:
                    break
                tid = msg["id"]
                if msg.get("started"):
                    started.add(tid)
                    continue
                task = todo.pop(tid, None)
                started.discard(tid)
                if task is not None:
                    report.add(task["key"], score_check(task["check"], msg, expected[task["check"]]))
        finally:
            if todo:
                worker.kill()
            elif keep_worker:
                _KEPT[key] = worker
            else:
                worker.close()
        # The worker died or went silent: the running checks are at fault.
        for tid in sorted(started):
            task = todo.pop(tid, None)
            if task is not None:
                report.add(task["key"], score_check(task["check"], {
                    "status": "crashed", "detail": "stopped the grader's worker process"},
                    expected[task["check"]]))
        restarts += 1
        if todo and restarts > 5:
            for tid, task in sorted(todo.items()):
                report.add(task["key"], score_check(task["check"], {
                    "status": "error", "detail": "was not graded (grader worker kept dying)"},
                    expected[task["check"]]))
            todo.clear()


# ---------------------------------------------------------------- output
def format_table(sub: dict, width: int = 150) -> str:
    lines = [f"== {sub['submission']}: {sub['score']:g} / {sub['max_score']:g}"]
    isolation = sub.get("isolation") or {}
    if isolation.get("summary"):
        lines.append(f"sandbox: {isolation['summary']}")
    if isolation.get("warning"):
        lines.append(isolation["warning"])
    lines += [f"   {line}" for line in transplant.describe(sub)]
    lines.append(f"{'check':32} {'file':22} {'score':>9}  status")
    for c in sub["checks"]:
        first = c["feedback"].splitlines()[0] if c["feedback"] and c["status"] != "passed" else ""
        row = f"{c['name']:32} {c['file']:22} {c['score']:>4g}/{c['max_score']:<4g}  {c['status']}"
        if first:
            row += "  " + first[: max(10, width - len(row) - 2)]
        lines.append(row)
    return "\n".join(lines)


def _close_kept():
    for worker in _KEPT.values():
        worker.close()
    _KEPT.clear()


atexit.register(_close_kept)

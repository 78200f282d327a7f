"""
Reading a submission: the one place where the grader opens a student's
files. A submission is a folder or a `.zip` with the graded files anywhere
inside (the shallowest copy of each wins), or one graded `.py` file.
"""
import os
import zipfile
from pathlib import Path
from typing import Dict, List, Tuple

from .manifest import GRADED_FILES

MAX_FILE_BYTES = 2 << 20
SKIP_DIRS = {"__MACOSX", ".ipynb_checkpoints", "__pycache__", ".git", ".venv", "venv",
             "site-packages", "node_modules"}


def _find(names, candidates) -> Dict[str, str]:
    """Shallowest match for each wanted file name."""
    found = {}
    for path in sorted(candidates, key=lambda p: (p.count("/"), p)):
        parts = path.split("/")
        if any(part in SKIP_DIRS or part.startswith("._") for part in parts):
            continue
        base = parts[-1]
        if base in names and base not in found:
            found[base] = path
    return found


def read_graded_files(submission) -> Tuple[Dict[str, bytes], Dict[str, str]]:
    """
    The graded files of a submission.

    Returns:
        (files, problems): {file name: content} of the graded files found, and
        {file name: problem} for those that could not be used (too large).
        Files that are simply absent appear in neither.

    Raises:
        FileNotFoundError: the submission does not exist or is not a folder,
            a .zip or a graded .py file.
    """
    submission = Path(submission)
    files: Dict[str, bytes] = {}
    problems: Dict[str, str] = {}
    too_large = f"is larger than {MAX_FILE_BYTES >> 20} MB"
    if submission.is_file() and zipfile.is_zipfile(submission):
        with zipfile.ZipFile(submission) as zf:
            infos = {i.filename: i for i in zf.infolist() if not i.is_dir()}
            for base, member in _find(GRADED_FILES, infos).items():
                if infos[member].file_size > MAX_FILE_BYTES:
                    problems[base] = f"{base} {too_large}"
                else:
                    files[base] = zf.read(member)
    elif submission.is_dir():
        found: List[str] = []
        for folder, dirs, names in os.walk(submission):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")]
            rel = os.path.relpath(folder, submission)
            found += [os.path.normpath(os.path.join(rel, n)) for n in names if n in GRADED_FILES]
        for base, rel in _find(GRADED_FILES, found).items():
            src = submission / rel
            if src.stat().st_size > MAX_FILE_BYTES:
                problems[base] = f"{base} {too_large}"
            else:
                files[base] = src.read_bytes()
    elif submission.is_file() and submission.name in GRADED_FILES:
        files[submission.name] = submission.read_bytes()
    elif not submission.exists():
        raise FileNotFoundError(f"{submission} does not exist")
    else:
        raise FileNotFoundError(f"{submission}: not a folder, a .zip or a graded .py file")
    return files, problems

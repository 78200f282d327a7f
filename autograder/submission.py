"""
Reading a submission: the one place where the grader opens a student's
files. A submission is a folder or a `.zip` with the graded files anywhere
inside (the shallowest copy of each wins), or one graded `.py` file.

Nothing is followed out of a submission: every path component is opened
with `O_NOFOLLOW` relative to its parent folder, and a graded file that is a
symbolic link, a hard link to a file outside the submission, a device, a
FIFO or a socket, a zip entry that is a link or a device, or a file larger
than `MAX_FILE_BYTES` is refused with a message that names it. Folders that
are symbolic links are not entered.
"""
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Dict, List, Tuple

from .manifest import GRADED_FILES

MAX_FILE_BYTES = 2 << 20
SKIP_DIRS = {"__MACOSX", ".ipynb_checkpoints", "__pycache__", ".git", ".venv", "venv",
             "site-packages", "node_modules"}
_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KIND = {stat.S_IFLNK: "a symbolic link", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
         stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}
_TOO_LARGE = f"is larger than {MAX_FILE_BYTES >> 20} MB"
_COPY = "hand in the file itself (a copy)"


class Refused(Exception):
    """A graded file that is not used; the message names it and says why."""


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


def _kind(mode: int) -> str:
    return _KIND.get(stat.S_IFMT(mode), "not a regular file")


def _read_fd(fd: int, shown: str, inside_links: int = 1) -> bytes:
    """Content of an open graded file, after checking what it is."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"{shown} is {_kind(st.st_mode)}, not a regular file; {_COPY}")
    if st.st_nlink > inside_links:
        raise Refused(f"{shown} is a hard link to a file outside the submission "
                      f"({st.st_nlink} names); {_COPY}")
    if st.st_size > MAX_FILE_BYTES:
        raise Refused(f"{shown} {_TOO_LARGE}")
    chunks, size = [], 0
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        size += len(chunk)
        if size > MAX_FILE_BYTES:
            raise Refused(f"{shown} {_TOO_LARGE}")
        chunks.append(chunk)
    return b"".join(chunks)


def _open_nofollow(root_fd: int, rel: str, shown: str) -> int:
    """Open `rel` below the folder `root_fd` without following any link."""
    parts = rel.split("/")
    fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parts[:-1]):
            try:
                nxt = os.open(part, _NOFOLLOW | os.O_DIRECTORY, dir_fd=fd)
            except OSError as error:
                raise Refused(f"{shown}: folder {'/'.join(parts[:i + 1])} cannot be entered "
                              f"without following a link ({error.strerror})") from None
            os.close(fd)
            fd = nxt
        try:  # never open a device or a FIFO: look first
            mode = os.lstat(parts[-1], dir_fd=fd).st_mode
            if not stat.S_ISREG(mode):
                raise Refused(f"{shown} is {_kind(mode)}, not a regular file; {_COPY}")
            return os.open(parts[-1], _NOFOLLOW, dir_fd=fd)
        except OSError as error:
            raise Refused(f"{shown} cannot be opened without following a link ({error.strerror})") from None
    finally:
        os.close(fd)


def _walk(root_fd: int):
    """(relative paths of every entry, {(dev, ino): names inside}) of a
    folder, without entering folders that are links or skipped."""
    entries, links = [], {}
    stack = [("", os.dup(root_fd))]
    while stack:
        rel, fd = stack.pop()
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    path = f"{rel}{entry.name}"
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        if entry.name in SKIP_DIRS or entry.name.startswith("."):
                            continue
                        try:
                            sub = os.open(entry.name, _NOFOLLOW | os.O_DIRECTORY, dir_fd=fd)
                        except OSError:
                            continue
                        stack.append((path + "/", sub))
                    else:
                        entries.append(path)
                        if stat.S_ISREG(st.st_mode):
                            key = (st.st_dev, st.st_ino)
                            links[key] = links.get(key, 0) + 1
        finally:
            os.close(fd)
    return entries, links


def _read_zip(submission: Path, files, problems):
    fd = os.open(submission, _NOFOLLOW)
    with os.fdopen(fd, "rb") as raw, zipfile.ZipFile(raw) as zf:
        infos = {i.filename: i for i in zf.infolist() if not i.is_dir()}
        for base, member in _find(GRADED_FILES, infos).items():
            info = infos[member]
            mode = info.external_attr >> 16
            shown = f"{base} (zip entry {member})"
            if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                problems[base] = f"{shown} is {_kind(mode)}, not a regular file; {_COPY}"
            elif info.file_size > MAX_FILE_BYTES:
                problems[base] = f"{base} {_TOO_LARGE}"
            else:
                try:
                    with zf.open(info) as f:
                        data = f.read(MAX_FILE_BYTES + 1)
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as error:
                    problems[base] = f"{shown} cannot be read from the zip ({error})"
                    continue
                if len(data) > MAX_FILE_BYTES:
                    problems[base] = f"{base} {_TOO_LARGE}"
                else:
                    files[base] = data


def read_graded_files(submission) -> Tuple[Dict[str, bytes], Dict[str, str]]:
    """
    The graded files of a submission.

    Returns:
        (files, problems): {file name: content} of the graded files found, and
        {file name: problem} for those that could not be used (a link, a
        device, too large, ...; the problem names the file and says why).
        Files that are simply absent appear in neither.

    Raises:
        FileNotFoundError: the submission does not exist, is itself a
            symbolic link, or is not a folder, a .zip or a graded .py file.
    """
    submission = Path(submission)
    files: Dict[str, bytes] = {}
    problems: Dict[str, str] = {}
    if submission.is_symlink():
        raise FileNotFoundError(f"{submission} is a symbolic link (to {os.path.realpath(submission)}); "
                                "submissions are read without following links: grade the real path")
    if not submission.exists():
        raise FileNotFoundError(f"{submission} does not exist")
    if submission.is_file() and zipfile.is_zipfile(submission):
        _read_zip(submission, files, problems)
    elif submission.is_dir():
        root_fd = os.open(submission, _NOFOLLOW | os.O_DIRECTORY)
        try:
            entries, links = _walk(root_fd)
            found: List[str] = [e for e in entries if e.rsplit("/", 1)[-1] in GRADED_FILES]
            for base, rel in _find(GRADED_FILES, found).items():
                shown = base if rel == base else f"{base} ({rel})"
                try:
                    fd = _open_nofollow(root_fd, rel, shown)
                    try:
                        st = os.fstat(fd)
                        files[base] = _read_fd(fd, shown, links.get((st.st_dev, st.st_ino), 1))
                    finally:
                        os.close(fd)
                except Refused as why:
                    problems[base] = str(why)
        finally:
            os.close(root_fd)
    elif submission.is_file() and submission.name in GRADED_FILES:
        fd = os.open(submission, _NOFOLLOW)
        try:
            files[submission.name] = _read_fd(fd, submission.name)
        except Refused as why:
            problems[submission.name] = str(why)
        finally:
            os.close(fd)
    else:
        raise FileNotFoundError(f"{submission}: not a folder, a .zip or a graded .py file")
    return files, problems

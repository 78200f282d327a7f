"""
Shared fixtures of the test suite.

`gradescope_install`: the Gradescope autograder zip unpacked into an
`/autograder`-like folder and `setup.sh` run there as Gradescope runs it (a
fresh virtualenv from the zip's own requirements, with the system's
`python3`; the reference outputs). Built once per test run (about a minute
and 5.5 GB, removed at the end); its virtualenv is also the Python that an
ordinary user can run when the grader is tested as one.
"""
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

# What Gradescope's image has on PATH: the system Python, no virtualenv.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="session")
def gradescope_install():
    from autograder.gradescope import build_zip

    base = Path(tempfile.mkdtemp(prefix="gradescope-"))
    os.chmod(base, 0o755)  # other users reach the virtualenv (the source stays root-only)
    try:
        zip_path = build_zip(base / "autograder.zip")
        root = base / "autograder"
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(root)
            for info in zf.infolist():  # zipfile drops the modes
                mode = info.external_attr >> 16
                if mode:
                    os.chmod(root / info.filename, mode)
        os.chmod(root, 0o755)
        env = {"PATH": SYSTEM_PATH, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
               "AUTOGRADER_SOURCE_DIR": str(root / "source"), "AUTOGRADER_VENV": str(root / "venv")}
        for key in ("PIP_CONFIG_FILE", "PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
            if key in os.environ:
                env[key] = os.environ[key]
        proc = subprocess.run(["bash", str(root / "setup.sh")], env=env, cwd=root, capture_output=True,
                              text=True, timeout=1800)
        if proc.returncode != 0:
            pytest.fail(f"setup.sh failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        yield {"root": root, "python": root / "venv" / "bin" / "python", "env": env, "setup": proc}
    finally:
        shutil.rmtree(base, ignore_errors=True)

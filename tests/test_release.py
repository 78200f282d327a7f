"""
The student release is a working course: built into a temporary folder, every
notebook runs inside it (KIT_FAST=1) as a student gets it (no cell raises;
each self-check says NOT DONE or NEEDS in one line) and once every TODO is
done (the reference graded files copied in: every self-check OK). Also: what
the release holds, the Colab setup cell with stand-ins for Google Drive, and
the one comparison rule of the self-checks and the grader.
"""
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
import torch

from autograder import manifest
from autograder.release import make_release

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_NAMES = [p.name for p in sorted(ROOT.glob(manifest.NOTEBOOKS))]
HIDDEN = re.compile(r"^### BEGIN HIDDEN TESTS\n.*?^### END HIDDEN TESTS\n?", re.M | re.S)
UNFINISHED = re.compile(r"^(NOT DONE|NEEDS|SKIPPED|ERROR)  ", re.M)
VERDICT = re.compile(r"relative error: \S+ \(tolerance \S+\)  (OK|MISMATCH)")

pytestmark = pytest.mark.timeout(1500)


def build_release(folder: Path) -> Path:
    """The release in `folder`, with the kit's shapes data copied in when it
    is there (the notebooks would build the same data, in about a minute)."""
    make_release(folder)
    shapes = ROOT / "data" / "shapes"
    if (shapes / "ImageSets" / "Main" / "val.txt").exists():
        shutil.copytree(shapes, folder / "data" / "shapes")
    return folder


def execute(path: Path):
    """Run a notebook in its own folder with KIT_FAST=1; errors are kept in
    the outputs (the tests say which cell raised)."""
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    before = os.environ.get("KIT_FAST")
    os.environ["KIT_FAST"] = "1"
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        if before is None:
            os.environ.pop("KIT_FAST")
        else:
            os.environ["KIT_FAST"] = before
    return nb


def execute_all(release: Path):
    return {name: execute(release / "notebooks" / name) for name in NOTEBOOK_NAMES}


def text_of(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}\n")
        elif "data" in output:
            parts.append(output.data.get("text/plain", "") + "\n")
    return "".join(parts)


def images_of(cell):
    return [o for o in cell.get("outputs", []) if "data" in o and "image/png" in o.data]


def errors_of(nb):
    return [(i, f"{o.ename}: {o.evalue}") for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.get("outputs", []) if o.output_type == "error"]


def grade_cells(nb):
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return build_release(tmp_path_factory.mktemp("release") / "course")


@pytest.fixture(scope="module")
def untouched(release):
    return execute_all(release)


@pytest.fixture(scope="module")
def completed(release, untouched, tmp_path_factory):
    done = tmp_path_factory.mktemp("completed") / "course"
    shutil.copytree(release, done, symlinks=True)
    for name in manifest.GRADED_FILES:
        shutil.copyfile(ROOT / name, done / name)
    return execute_all(done)


# ------------------------------------------------------------ contents
def test_release_holds_what_the_manifest_lists(release):
    for rel in manifest.expand(ROOT, manifest.RELEASE_PROVIDED):
        assert (release / rel).read_bytes() == (ROOT / rel).read_bytes(), rel
    for name in (*manifest.GRADED_FILES, manifest.STUBS_FILE, "README.md", "requirements.txt",
                 ".gitignore", *[f"notebooks/{n}" for n in NOTEBOOK_NAMES]):
        assert (release / name).is_file(), name
    assert not (release / "autograder").exists()
    for path in release.rglob("*.py"):
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text, path


def test_release_readme_and_requirements(release):
    readme = (release / "README.md").read_text()
    for name in NOTEBOOK_NAMES:
        assert name in readme
    assert "python -m zipfile -c submission.zip two_stage_detector.py common.py" in readme
    lines = [line.split("#")[0].strip() for line in (release / "requirements.txt").read_text().splitlines()]
    assert not [line for line in lines if re.match(r"torch(vision)?\b", line)], "never reinstall torch"
    assert "data/VOCdevkit/" in (release / ".gitignore").read_text().split()
    assert "data/VOCdevkit/" in (ROOT / ".gitignore").read_text().split()


def test_photos_are_written_offline_inside_the_release(release):
    code = ("import a4_helper; d = a4_helper.VOC2007DetectionTiny(a4_helper.photos_dataset_dir(), "
            "split='photos'); print(len(d), d[0][0])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=release / "notebooks", capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(release)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("5 ") and str(release / "data" / "photos" / "JPEGImages") in proc.stdout


def test_todo_list_agrees_with_the_grader():
    from autograder.checks import CHECKS
    from kit import todos

    assert list(todos.TODOS) == list(CHECKS)
    for name, todo in todos.TODOS.items():
        assert todo.file == CHECKS[name].file, name
        assert todos.fingerprint((ROOT / todo.file).read_text(), todo.function), todo.function


# ------------------------------------------------------- as released
@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_untouched_release_runs_and_says_what_is_not_done(untouched, name):
    nb = untouched[name]
    assert errors_of(nb) == [], f"{name}: cells raised {errors_of(nb)}"
    everything = "".join(text_of(c) for c in nb.cells)
    assert "Traceback" not in everything and "MISMATCH" not in everything
    for cell in grade_cells(nb):
        lines = UNFINISHED.findall(text_of(cell))
        assert lines and set(lines) <= {"NOT DONE", "NEEDS"}, f"{name}:\n{cell.source}\n{text_of(cell)}"
        assert len(text_of(cell).strip().splitlines()) == 1, text_of(cell)


def test_untouched_release_names_the_todo_and_its_file(untouched):
    out = {name: "".join(text_of(c) for c in nb.cells) for name, nb in untouched.items()}
    assert "NOT DONE  iou (two_stage_detector.py): still the stub - implement the TODO" in out[
        "03_iou_matching_deltas.ipynb"]
    assert "NOT DONE  get_fpn_location_coords (common.py)" in out["01_data_and_backbone.ipynb"]
    assert ("SKIPPED  the anchor explorer: needs get_fpn_location_coords (common.py), "
            "generate_fpn_anchors (two_stage_detector.py)") in out["02_anchors.ipynb"], out["02_anchors.ipynb"]
    assert "SKIPPED  training: needs DetectorBackboneWithFPN.__init__" in out["05_faster_rcnn.ipynb"], \
        out["05_faster_rcnn.ipynb"][-3000:]
    # Provided cells that need no TODO still run: the data and its pictures.
    assert sum(len(images_of(c)) for c in untouched["01_data_and_backbone.ipynb"].cells) >= 3


# ------------------------------------------------------- completed
@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_completed_release_passes_every_self_check(completed, name):
    nb = completed[name]
    assert errors_of(nb) == [], f"{name}: cells raised {errors_of(nb)}"
    everything = "".join(text_of(c) for c in nb.cells)
    assert not UNFINISHED.findall(everything) and "MISMATCH" not in everything, everything[-3000:]
    assert "Traceback" not in everything and "FAST=True" in everything
    for cell in grade_cells(nb):
        verdicts = VERDICT.findall(text_of(cell))
        assert verdicts and set(verdicts) == {"OK"}, f"{name}:\n{text_of(cell)}"


def test_completed_release_shows_pictures(completed):
    counts = {name: sum(len(images_of(c)) for c in nb.cells) for name, nb in completed.items()}
    # GT pictures + FPN locations; photo + anchor grid + static explorer; matches;
    # losses + proposals; losses (x2) + predictions (2 overfit + 3 val).
    minimum = {"01": 4, "02": 3, "03": 1, "04": 2, "05": 7}
    for name, count in counts.items():
        assert count >= minimum[name[:2]], counts


def test_completed_explorer_reports_counts(completed):
    nb = completed["02_anchors.ipynb"]
    explorer_cell = next(c for c in nb.cells if "AnchorExplorer(" in c.source)
    bundle = next(o for o in explorer_cell.outputs if "data" in o).data
    assert "application/vnd.jupyter.widget-view+json" in bundle
    text = bundle["text/plain"]
    assert "level p4, stride 16, stride_scale 8 (1:1 anchor 128 px)" in text
    assert "14x14 locations x 3 ratios = 588 anchors" in text
    numbers = re.search(r"foreground (\d+) .*\| neutral (\d+) \| background (\d+)", text)
    assert sum(map(int, numbers.groups())) == 588
    static = next(c for c in nb.cells if "explorer_overview(" in c.source)
    lines = re.findall(r"^(p[345]), stride_scale (\d+): foreground (\d+), neutral (\d+), background (\d+)$",
                       text_of(static), flags=re.M)
    assert [(level, int(scale)) for level, scale, *_ in lines] == [
        ("p3", 4), ("p4", 4), ("p5", 4), ("p3", 8), ("p4", 8), ("p5", 8)]
    for level, _, *counts in lines:
        assert sum(map(int, counts)) == {"p3": 2352, "p4": 588, "p5": 147}[level]


def test_completed_training_trains_from_scratch_and_reports_map(completed):
    out = "".join(text_of(c) for c in completed["05_faster_rcnn.ipynb"].cells)
    assert "training from scratch" in out
    value = float(re.search(r"mAP@0.5 on 4 validation images: ([0-9.]+)", out).group(1))
    assert 0.0 <= value <= 1.0


# ------------------------------------------------------------- Colab
def test_colab_setup_cell_finds_the_kit_on_drive(release, tmp_path):
    """The first cell, in a kernel where `google.colab` is a stand-in whose
    `drive.mount` does nothing: it finds the release in the fake MyDrive and
    works from its notebooks/ folder."""
    from nbclient import NotebookClient

    fake = tmp_path / "fake"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "drive.py").write_text(
        "MOUNTED = []\ndef mount(path):\n    MOUNTED.append(path)\n")
    drive = tmp_path / "drive"
    kit = drive / "MyDrive" / "courses" / "detection"
    kit.parent.mkdir(parents=True)
    shutil.copytree(release, kit, ignore=shutil.ignore_patterns("shapes", "*.ipynb"))
    (drive / "MyDrive" / "other").mkdir()
    source = nbformat.read(str(release / "notebooks" / NOTEBOOK_NAMES[0]), as_version=4)
    setup = next(c for c in source.cells if c.cell_type == "code")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import google.colab"),
        setup,
        nbformat.v4.new_code_cell(textwrap.dedent("""\
            import os, google.colab.drive as d
            print("cwd", os.getcwd()); print("root", KIT_ROOT); print("mounted", d.MOUNTED)
            import two_stage_detector, nbtools
            print("tsd", two_stage_detector.__file__)""")),
    ])
    env_before = {k: os.environ.get(k) for k in ("PYTHONPATH", "KIT_DRIVE", "KIT_DIR")}
    os.environ["PYTHONPATH"] = str(fake) + os.pathsep + os.environ.get("PYTHONPATH", "")
    os.environ["KIT_DRIVE"] = str(drive)
    os.environ.pop("KIT_DIR", None)
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    out = text_of(nb.cells[1]) + text_of(nb.cells[2])
    assert f"kit folder: {kit}" in out
    assert f"cwd {kit / 'notebooks'}" in out and f"root {kit}\n" in out
    assert f"mounted ['{drive}']" in out and f"tsd {kit / 'two_stage_detector.py'}" in out


# ----------------------------------------------- one comparison rule
def test_float64_location_coords_same_verdict_in_self_check_and_grader(capsys):
    """A get_fpn_location_coords that returns float64: the notebook's
    self-check and the grader's check both reject it, for its dtype."""
    sys.path.insert(0, str(ROOT / "notebooks"))
    import nbtools
    from autograder.checks import CHECKS
    import common

    expected = torch.tensor([[4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [4.0, 12.0], [12.0, 12.0], [20.0, 12.0]])
    got = common.get_fpn_location_coords({"p3": (1, 64, 2, 3)}, {"p3": 8})["p3"]
    nbtools.compare("coords", expected, got, "hint")
    assert capsys.readouterr().out.rstrip().endswith("OK")
    for value, verdict in ((got, True), (got.double(), False)):
        nbtools.compare("coords", expected, value, "hint")
        notebook_ok = capsys.readouterr().out.find("MISMATCH") < 0
        grader_ok = not CHECKS["fpn_location_coords"].problems("small", {"p3": value}, {"p3": expected}, None)
        assert notebook_ok == grader_ok == verdict
    nbtools.compare("coords", expected, got.double(), "hint")
    assert "dtype torch.float64, expected torch.float32" in capsys.readouterr().out

"""
nbgrader front end: the course directory from `autograder.nbgrader_course`,
`nbgrader generate_assignment` / `autograde` / `generate_feedback` on a tiny
notebook whose hidden tests call `autograder.notebook.grade`, and the student
release of the kit's own notebooks.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from autograder.nbgrader_course import make_course
from autograder.release import make_release

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent / "submissions"))
import corpus  # noqa: E402

ENV = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))


def grade_cell(name, points, before=""):
    return new_code_cell(
        before + "### BEGIN HIDDEN TESTS\nfrom autograder.notebook import grade\n"
        f'grade("{name}")\n### END HIDDEN TESTS\n',
        metadata={"nbgrader": {"grade": True, "grade_id": f"check_{name}", "locked": True,
                               "points": points, "schema_version": 3, "solution": False}})


def nbgrader(course, *args):
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def test_nbgrader_course_autograde_and_feedback(tmp_path):
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}})
    nb.cells = [
        new_code_cell("import os, sys\nsys.path[:0] = [os.getcwd(), os.path.dirname(os.getcwd())]"),
        # The student's iou raises: 0 points.
        grade_cell("iou", 3),
        # A library warning on stderr must not zero this cell.
        grade_cell("nms", 3, before="import warnings\nwarnings.warn('a library warning')\n"),
    ]
    nbformat.write(nb, tmp_path / "tiny.ipynb")
    course = make_course(tmp_path / "course", [tmp_path / "tiny.ipynb"])
    assert "exclude_overwriting" in (course / "nbgrader_config.py").read_text()

    nbgrader(course, "generate_assignment", "two_stage_detector")
    release = course / "release" / "two_stage_detector"
    text = (release / "tiny.ipynb").read_text()
    assert "HIDDEN TESTS" not in text and "grade(" not in text
    assert "BEGIN SOLUTION" not in (release / "two_stage_detector.py").read_text()

    student = course / "submitted" / "alice" / "two_stage_detector"
    student.mkdir(parents=True)
    shutil.copy(release / "tiny.ipynb", student)
    case = next(c for c in corpus.CASES if c["name"] == "exception_iou")
    corpus.build(case, ROOT, student)
    nbgrader(course, "autograde", "two_stage_detector")
    graded = course / "autograded" / "alice" / "two_stage_detector"
    # The student's own graded files were kept (not the source's).
    assert (graded / "two_stage_detector.py").read_text() == (student / "two_stage_detector.py").read_text()
    cells = json.loads((graded / "tiny.ipynb").read_text())["cells"]
    assert not any(o.get("name") == "stderr" for c in cells for o in c.get("outputs", []))

    nbgrader(course, "export")
    row = next(csv.DictReader((course / "grades.csv").open()))
    assert float(row["score"]) == 3.0 and float(row["max_score"]) == 6.0

    nbgrader(course, "generate_feedback", "two_stage_detector")
    html = (course / "feedback" / "alice" / "two_stage_detector" / "tiny.html").read_text()
    assert "HIDDEN TESTS" not in html and "autograder.notebook" not in html
    assert "iou: 0 / 3" in html and "nms: 3 / 3" in html


@pytest.mark.skipif(not list((ROOT / "notebooks").glob("*.ipynb")), reason="no notebooks yet")
def test_release_of_the_kit_notebooks(tmp_path):
    files = make_release(tmp_path / "release")
    notebooks = [f for f in files if f.suffix == ".ipynb"]
    assert len(notebooks) == len(list((ROOT / "notebooks").glob("*.ipynb")))
    for nb in notebooks:
        text = nb.read_text()
        assert "HIDDEN TESTS" not in text and "autograder" not in text and "BEGIN SOLUTION" not in text, nb
    assert not any("fixtures" in str(f) or f.suffix == ".pt" for f in files)


def test_course_from_the_manifest_runs_a_notebook(tmp_path):
    """The kit's course: its assignment holds what the notebooks need (one
    folder: notebooks, their helpers, the released graded files, kit/ with the
    stubs' fingerprints, the data generator, the photographs' annotations), and
    a released notebook runs there without an error, saying what is not done."""
    from nbclient import NotebookClient

    from autograder import manifest

    notebooks = sorted(ROOT.glob(manifest.NOTEBOOKS))
    course = make_course(tmp_path / "course", notebooks)
    source = course / "source" / "two_stage_detector"
    for name in ("two_stage_detector.py", "common.py", "a4_helper.py", "nbtools.py", "anchor_explorer.py",
                 "recipes.py", "kit/checking.py", "kit/todos.py", "kit/stubs.json", "data/make_shapes.py",
                 "data/photos/Annotations/astronaut.xml", "data/photos/ImageSets/Main/photos.txt"):
        assert (source / name).is_file(), name
    nbgrader(course, "generate_assignment", "two_stage_detector")
    release = course / "release" / "two_stage_detector"
    nb = nbformat.read(str(release / "03_iou_matching_deltas.ipynb"), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(release)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "NOT DONE  iou (two_stage_detector.py): still the stub" in text
    assert (release / "data" / "photos" / "JPEGImages" / "astronaut.jpg").is_file()  # written offline

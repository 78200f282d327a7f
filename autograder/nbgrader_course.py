"""
nbgrader course directory for the kit.

    python -m autograder nbgrader COURSE_DIR

writes `COURSE_DIR/nbgrader_config.py` and `COURSE_DIR/source/two_stage_detector/`:
the notebooks with their hidden tests and, from `manifest.py`, what the student
release holds (the *released* graded .py files, `kit/` with the stubs'
fingerprints, `a4_helper.py`, the data generator and the photographs'
annotations), in one folder: the notebooks' helper modules sit next to them.
nbgrader copies the non-notebook files of `source/` verbatim, so only stripped
.py files go there. The config:

- `Autograde.exclude_overwriting` keeps each student's own `two_stage_detector.py`
  and `common.py` when autograding (otherwise nbgrader puts the source's back);
- grade cells call `autograder.notebook.grade`, which grades the student's files
  in a sandbox (the package is put on the kernels' PYTHONPATH);
- `StderrToStdout` runs after execution: library warnings on stderr do not zero a
  cell (errors still do);
- feedback runs `ClearHiddenTests`: hidden test code never shows in feedback.
"""
import shutil
from pathlib import Path

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from . import manifest
from .manifest import ASSIGNMENT, GRADED_FILES
from .release import ROOT, copy_provided, write_graded_stubs

CONFIG = '''"""nbgrader configuration of the two-stage detector course."""
import os
import sys

KIT_ROOT = {kit_root!r}  # the kit with the autograder package (not given to students)
if KIT_ROOT not in sys.path:
    sys.path.insert(0, KIT_ROOT)
os.environ["PYTHONPATH"] = KIT_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")

c = get_config()  # noqa: F821 - provided by nbgrader
c.CourseDirectory.course_id = "two-stage-detector"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
# Keep the students' own graded files when autograding.
c.Autograde.exclude_overwriting = {{{assignment!r}: {graded!r}}}
c.Autograde.autograde_preprocessors = [
    "nbgrader.preprocessors.Execute",
    "autograder.nbgrader_course.StderrToStdout",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Execute.timeout = 1800
# Feedback: grades, but no hidden test code.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
'''


class StderrToStdout(Preprocessor):
    """Turn stderr stream outputs into stdout ones, so that a warning printed
    by a library does not make nbgrader give 0 to the cell."""

    enabled = Bool(True).tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                output["name"] = "stdout"
        return cell, resources


def make_course(course: Path, notebooks, with_py_files: bool = True, kit_root: Path = ROOT) -> Path:
    """
    Write the course directory.

    Args:
        course: the course folder (created if needed).
        notebooks: nbgrader source notebooks for `source/two_stage_detector/`.
        with_py_files: also write the released graded files and the provided
            files of `manifest.RELEASE_PROVIDED` (False: notebooks only).
        kit_root: the kit (with the autograder package) the config points to.

    Returns:
        The course folder.
    """
    course = Path(course)
    kit_root = Path(kit_root)
    src = course / "source" / ASSIGNMENT
    src.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(CONFIG.format(
        kit_root=str(kit_root.resolve()), assignment=ASSIGNMENT, graded=list(GRADED_FILES)))
    for nb in notebooks:
        shutil.copy(nb, src / Path(nb).name)
    if with_py_files:
        write_graded_stubs(src, kit_root)
        copy_provided(src, kit_root)
        helpers = src / "notebooks"  # next to the notebooks, in the assignment's one folder
        for helper in sorted(helpers.glob("*.py")):
            shutil.move(str(helper), src / helper.name)
        shutil.rmtree(helpers, ignore_errors=True)
    return course

"""
nbgrader course directory for the kit.

    python -m autograder nbgrader COURSE_DIR

writes `COURSE_DIR/nbgrader_config.py` and `COURSE_DIR/source/two_stage_detector/`
(the notebooks with their hidden tests, the *released* graded .py files and the
helpers). nbgrader copies the non-notebook files of `source/` verbatim, so only
stripped .py files go there. The config:

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

from .release import ASSIGNMENT, GRADED_FILES, PROVIDED_FILES, ROOT, strip_solutions

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
    """Write the course directory; returns it."""
    course = Path(course)
    src = course / "source" / ASSIGNMENT
    src.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(CONFIG.format(
        kit_root=str(Path(kit_root).resolve()), assignment=ASSIGNMENT, graded=list(GRADED_FILES)))
    for nb in notebooks:
        shutil.copy(nb, src / Path(nb).name)
        for helper in Path(nb).parent.glob("*.py"):
            shutil.copy(helper, src / helper.name)
    if with_py_files:
        for name in GRADED_FILES:
            (src / name).write_text(strip_solutions((Path(kit_root) / name).read_text(), name))
        for name in PROVIDED_FILES:
            shutil.copy(Path(kit_root) / name, src / name)
    return course

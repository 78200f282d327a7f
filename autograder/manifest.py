"""
What goes where: the one list of the kit's files that the grader, the student
release, the nbgrader course and the Gradescope zip are built from.

Paths are relative to the kit's root folder. A path ending in "/" is a folder,
copied with everything in it (minus `__pycache__`).
"""
# nbgrader's name of the assignment (its folder in source/ and release/).
ASSIGNMENT = "two_stage_detector"

# The files students hand in: their TODO blocks are graded. The release holds
# them with every solution block replaced by `pass`.
GRADED_FILES = ("two_stage_detector.py", "common.py")

# Provided files the graded files import: copied next to every prepared
# submission and shipped with the reference solution.
GRADING_RUNTIME_FILES = ("a4_helper.py",)

# The kit package: the provided code that a4_helper.py gathers (data,
# training, evaluation, figures) and what the notebooks' self-checks and the
# grader share (one comparison rule, one list of TODOs). The grader imports
# it in its worker before any child is started (children cannot read it),
# and the release and the Gradescope zip ship it.
KIT_PACKAGE = tuple(f"kit/{name}.py" for name in (
    "__init__", "checking", "todos", "data", "training", "evaluation", "figures", "anchors",
    "presets"))

# Provided files of the student release, shipped unchanged: the helpers, the
# data generator, the photographs' annotations (their JPEGs are written from
# scikit-image on first use, offline), the notebooks' helper modules.
RELEASE_PROVIDED = (
    *GRADING_RUNTIME_FILES,
    *KIT_PACKAGE,
    "data/make_shapes.py",
    "data/photos/Annotations/",
    "data/photos/ImageSets/",
    "notebooks/nbtools.py",
    "notebooks/anchor_explorer.py",
    "notebooks/recipes.py",
)
# The notebooks; they go through `nbgrader generate_assignment`.
NOTEBOOKS = "notebooks/[0-9][0-9]_*.ipynb"
# Files written into the release from student/ (source -> name in the release).
RELEASE_STUDENT_FILES = {
    "student/README.md": "README.md",
    "student/requirements.txt": "requirements.txt",
    "student/gitignore": ".gitignore",
}
# Written into the release's kit/ by `make_release`: a fingerprint of every
# stub, so that the self-checks can tell an untouched TODO from a started one.
STUBS_FILE = "kit/stubs.json"

# The Gradescope zip: the autograder package (its fixtures are built by
# setup.sh in the image), the reference solution and what it imports.
GRADESCOPE_PACKAGE = (
    "__init__.py", "__main__.py", "blocks.py", "check_base.py", "checks.py", "checks_boxes.py",
    "checks_common.py", "checks_faster_rcnn.py", "checks_rpn.py", "compare.py", "confine.py",
    "fixtures.py", "gradescope.py", "grader.py", "hooks.py", "manifest.py", "nbgrader_course.py",
    "notebook.py", "oracles.py", "release.py", "sandbox.py", "submission.py", "transplant.py",
)
GRADESCOPE_SOURCE = (*GRADED_FILES, *GRADING_RUNTIME_FILES, *KIT_PACKAGE)


def expand(root, entries):
    """
    The files named by `entries` (file paths, or folders ending in "/").

    Args:
        root: the kit's folder (a `pathlib.Path`).
        entries: paths relative to `root`.

    Returns:
        List of paths relative to `root`, sorted within each folder.
    """
    out = []
    for entry in entries:
        if entry.endswith("/"):
            folder = root / entry
            out += sorted(str(p.relative_to(root)) for p in folder.rglob("*")
                          if p.is_file() and "__pycache__" not in p.parts)
        else:
            out.append(entry)
    return out

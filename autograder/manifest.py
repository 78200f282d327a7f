"""
What goes where: the one list of the kit's files that the grader, the student
release, the nbgrader course and the Gradescope zip are built from.
"""
# The files students hand in: their TODO blocks are graded.
GRADED_FILES = ("two_stage_detector.py", "common.py")
# Provided files the graded files import: copied next to every prepared
# submission and shipped with the reference solution.
GRADING_RUNTIME_FILES = ("a4_helper.py",)

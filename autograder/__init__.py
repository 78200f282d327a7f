"""
Autograder of the two-stage detector kit: student release, reference outputs,
one sandboxed check per graded TODO, and CLI / pytest / Gradescope / nbgrader
front ends. Run `python -m autograder --help`.
"""

"""
Command line of the autograder.

    python -m autograder release OUT_DIR
    python -m autograder fixtures
    python -m autograder grade SUBMISSION [SUBMISSION ...] [--json F] [--csv F] [--jobs N]
    python -m autograder gradescope OUT.zip
    python -m autograder nbgrader COURSE_DIR
    python -m autograder list
"""
import argparse
import os
import sys
from pathlib import Path


def _submissions(paths):
    """A folder without graded files at its top level but with sub-folders or
    .zip files is a batch: each of those is one submission."""
    out = []
    for p in map(Path, paths):
        kids = sorted(k for k in p.iterdir() if k.is_dir() or k.suffix == ".zip") if p.is_dir() else []
        graded = p.is_dir() and any((p / f).exists() for f in ("two_stage_detector.py", "common.py"))
        out += kids if (kids and not graded) else [p]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("release", help="write the student version of the kit")
    p.add_argument("out_dir")
    p.add_argument("--no-notebooks", action="store_true", help="skip nbgrader for the notebooks")

    p = sub.add_parser("fixtures", help="regenerate the reference outputs")
    p.add_argument("--out", default=None, help="folder (default: autograder/fixtures)")

    p = sub.add_parser("grade", help="grade submissions (folders or .zip files)")
    p.add_argument("submissions", nargs="+",
                   help="submission folders/.zip files, or one folder holding many of them")
    p.add_argument("--json", help="write all results as JSON (rewritten after every check)")
    p.add_argument("--jsonl", help="append one JSON line per graded check")
    p.add_argument("--csv", help="write one row per submission")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="checks run at once")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per check")
    p.add_argument("--mem-limit-mb", type=int, default=2048, help="memory per check")
    p.add_argument("--checks", nargs="+", help="only these checks")
    p.add_argument("--quiet", action="store_true", help="no per-check feedback")

    p = sub.add_parser("gradescope", help="build the Gradescope autograder zip")
    p.add_argument("out_zip")

    p = sub.add_parser("nbgrader", help="write an nbgrader course directory")
    p.add_argument("course_dir")

    sub.add_parser("list", help="list the checks")

    args = parser.parse_args(argv)
    if args.cmd == "release":
        from .release import make_release

        files = make_release(args.out_dir, notebooks=not args.no_notebooks)
        print(f"wrote {len(files)} files to {args.out_dir}")
        for f in files:
            print(f"  {f}")
        return 0
    if args.cmd == "fixtures":
        from . import fixtures

        out = fixtures.generate(Path(args.out) if args.out else None, verbose=True)
        print(f"wrote reference outputs to {out}")
        return 0
    if args.cmd == "list":
        from .checks import CHECKS

        total = 0
        for c in CHECKS.values():
            print(f"{c.name:32} {c.file:22} {c.points:>4g}  {c.todo}")
            total += c.points
        print(f"{'total':32} {'':22} {total:>4g}")
        return 0
    if args.cmd == "nbgrader":
        from .nbgrader_course import make_course

        from .manifest import NOTEBOOKS

        notebooks = sorted(Path(__file__).resolve().parent.parent.glob(NOTEBOOKS))
        course = make_course(Path(args.course_dir), notebooks)
        print(f"wrote the nbgrader course to {course} ({len(notebooks)} notebooks); next:\n"
              f"  cd {course} && nbgrader generate_assignment two_stage_detector")
        return 0
    if args.cmd == "gradescope":
        from .gradescope import build_zip

        print(f"wrote {build_zip(args.out_zip)}")
        return 0
    if args.cmd == "grade":
        from .grader import format_table, grade

        subs = _submissions(args.submissions)
        report = grade(subs, jobs=args.jobs, timeout=args.timeout, mem_limit_mb=args.mem_limit_mb,
                       checks=args.checks, json_path=args.json, jsonl_path=args.jsonl)
        for s in report.as_list():
            print(format_table(s))
            if not args.quiet:
                for c in s["checks"]:
                    if c["status"] != "passed":
                        print(f"\n-- {c['name']} ({c['score']:g}/{c['max_score']:g}):\n{c['feedback']}")
            print()
        if args.csv:
            report.write_csv(args.csv)
        if args.json:
            report.write_json(args.json)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""
How long grading one submission takes, against a bare
`python -c "import torch, torchvision"` (the target: at most about 10x).

    .venv/bin/python bench/grading_speed.py [--jobs 2] [--repeat 3]

Both are timed end to end as fresh processes (the grading run is the CLI:
`python -m autograder grade SUBMISSION`, i.e. interpreter start, the sandbox
worker's imports, all 21 checks in sandboxed children, comparison). The
reference outputs are built once before timing. Medians of `--repeat` runs.
The CPU may be shared with other work: say so when quoting the numbers.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(cmd, **kwargs) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, **kwargs)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="checks run at once (default 2)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--submission", default=None,
                        help="folder to grade (default: the reference solution)")
    args = parser.parse_args()

    from autograder import fixtures

    fixtures.ensure()
    submission = args.submission
    tmp = None
    if submission is None:
        tmp = tempfile.TemporaryDirectory()
        for name in ("two_stage_detector.py", "common.py"):
            Path(tmp.name, name).write_text((ROOT / name).read_text())
        submission = tmp.name

    py = sys.executable
    bare = [timed([py, "-c", "import torch, torchvision"]) for _ in range(args.repeat)]
    grading = [timed([py, "-m", "autograder", "grade", submission, "--jobs", str(args.jobs), "--quiet"])
               for _ in range(args.repeat)]
    b, g = statistics.median(bare), statistics.median(grading)
    print(f"cpus: {os.cpu_count()}, jobs: {args.jobs}, runs: {args.repeat} (medians; the CPU may be shared)")
    print(f"bare `import torch, torchvision`: {b:.2f} s  (runs: {', '.join(f'{x:.2f}' for x in bare)})")
    print(f"grade one submission, 21 checks:  {g:.2f} s  (runs: {', '.join(f'{x:.2f}' for x in grading)})")
    print(f"ratio: {g / b:.1f}x (target: at most about 10x)")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

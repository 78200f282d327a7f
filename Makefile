# Every target creates .venv on first use (Python 3.11 + pip, nothing else).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: venv demo long data test browser-deps bench gpu-check clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "Need $(PYTHON) on PATH (or run: make PYTHON=python3 ...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $@

# The main job: build the shapes data, train the reference detector from
# scratch (GPU if present, else CPU; see the README for times), print
# mAP@0.5 per class on the val split, write figures to outputs/demo/.
demo: data
	$(PY) demo.py --out outputs/demo
	$(PY) -m autograder release outputs/demo/release
	$(PY) -m autograder grade . outputs/demo/release --jobs 2 --json outputs/demo/grades.json

# The longer schedule (0.93 mAP@0.5, about 70 minutes on 2 CPU cores):
# 12,000 iterations at 160 px on a 20,000-image train split (generated next to
# the default one; the val split is the same 500 images), then a second
# learning-rate cycle of 6,000 iterations at 224 px from those weights.
# It uses the course's recipe (SGD, momentum 0.9, step schedule, no flips) in
# one training process, as it was measured, not the demo's short-run defaults
# (AdamW, cosine, clipping, flips, two data-parallel processes on a CPU).
COURSE_RECIPE := --optimizer sgd --schedule step --weight-decay 1e-4 --warmup 100 --grad-clip 0 --no-flips \
	--processes 1
long: data
	$(PY) demo.py --iters 12000 --train-images 20000 --lr 0.02 $(COURSE_RECIPE) --out outputs/long
	$(PY) demo.py --iters 6000 --train-images 20000 --lr 0.01 $(COURSE_RECIPE) --seed 1 --image-size 224 \
		--init outputs/long/detector.pt --out outputs/long2

# The embedded shapes dataset (data/shapes/, deterministic, under a minute).
data: venv
	$(PY) data/make_shapes.py --out data/shapes --train 2000 --val 500 --seed 0

# The whole test suite.
test: venv browser-deps
	$(PY) -m pytest

# Debian's Chromium for the real-browser notebook test (tests/test_browser.py);
# installed with apt-get when missing (root, or sudo).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser-deps:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium; }

# Speed: this kit's detector (reference and batched fast path) against
# torchvision's Faster R-CNN on the same batches; CPU, batch 8 (see bench/NOTES.md).
# One thread by default: on a shared machine two-thread figures swing wildly.
BENCH_ARGS ?= --threads 1
bench: venv
	$(PY) bench/benchmark.py $(BENCH_ARGS)

# One prepared check on a GPU machine (at most 8 minutes on an H100/H200, no
# internet): CUDA-relevant tests, notebook 05 on CUDA (KIT_FAST=1), 300
# training iterations at batch 128 with bf16, inference and mAP, the benchmark
# at batch 128 with NMS timings. Writes outputs/gpu_check/summary.{json,md}.
# `GPU_CHECK_ARGS=--dry-run` runs it on the CPU with tiny sizes (CI does).
GPU_CHECK_ARGS ?=
gpu-check: data
	$(PY) bench/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache

# Autograder (see README, "For instructors"): the student version of the kit,
# the reference outputs, the Gradescope zip, and grading a folder of
# submissions (SUBMISSIONS=folder holding one sub-folder or .zip per student).
RELEASE_DIR ?= outputs/release
SUBMISSIONS ?= submissions
.PHONY: release fixtures gradescope grade

release: venv
	$(PY) -m autograder release $(RELEASE_DIR)

fixtures: venv
	$(PY) -m autograder fixtures

gradescope: venv
	$(PY) -m autograder gradescope outputs/gradescope_autograder.zip

grade: venv
	$(PY) -m autograder grade $(SUBMISSIONS) --json outputs/grades.json --csv outputs/grades.csv

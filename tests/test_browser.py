"""
The anchor explorer in a real browser: JupyterLab on localhost, Debian's
Chromium driven headless by Playwright, in a window of 1400 px. The test
builds the student release with the reference graded files (a student who
finished the anchors), opens its anchors notebook, runs it, checks that the
explorer fits the notebook column, moves the explorer's `stride_scale` slider
with the mouse and checks that the printed counts and the drawing change.
Screenshots of the explorer before and after go to outputs/browser/ and are
compared pixel by pixel.

Needs /usr/bin/chromium (`make browser-deps` installs it; `make test` does).
"""
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "outputs" / "browser"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
NOTEBOOK = "02_anchors.ipynb"
COUNTS = re.compile(r"foreground (\d+) \(IoU >= [0-9.]+\) \| neutral (\d+) \| background (\d+)")

pytestmark = pytest.mark.timeout(300)
KIT = []  # the served release


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kit_copy(tmp_path):
    """The student release with the reference graded files copied in (and the
    kit's shapes data, when built): what JupyterLab saves never touches the
    repository."""
    from autograder.release import make_release

    kit = tmp_path / "release"
    make_release(kit)
    for name in ("two_stage_detector.py", "common.py"):
        shutil.copyfile(ROOT / name, kit / name)
    shapes = ROOT / "data" / "shapes"
    if (shapes / "ImageSets" / "Main" / "val.txt").exists():
        (kit / "data" / "shapes").symlink_to(shapes)
    return kit


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 (no token, fresh settings, no
    autosave) serving a copy of the kit; yields its URL."""
    assert os.access(CHROMIUM, os.X_OK), (
        f"{CHROMIUM} not found: install Debian's Chromium with `make browser-deps` "
        "(or point the CHROMIUM environment variable at a Chromium binary)"
    )
    home = tmp_path_factory.mktemp("jupyter")
    kit = kit_copy(home)
    KIT.append(kit)
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # No "news" and update checks: the page stays offline and unobstructed.
    (settings / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}'
    )
    docmanager = home / "settings" / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text('{"autosave": false}')
    # Start the notebook's kernel without asking; render every cell (no
    # windowing), so that screenshots of the explorer are fully painted.
    notebook = home / "settings" / "@jupyterlab" / "notebook-extension"
    notebook.mkdir(parents=True)
    (notebook / "tracker.jupyterlab-settings").write_text(
        '{"autoStartDefaultKernel": true, "windowingMode": "none"}'
    )
    env = dict(
        os.environ,
        KIT_FAST="1",
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
    )
    port = free_port()
    log = open(home / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         "--IdentityProvider.token=", "--ServerApp.password=",
         f"--ServerApp.root_dir={kit}"],
        cwd=kit, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None, (home / "server.log").read_text()[-3000:]
                assert time.time() < deadline, "JupyterLab did not start in 90 s"
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def page(jupyterlab, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1300},
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(60_000)
        yield page
        context.close()


def explorer_counts(page):
    text = page.locator(".anchor-explorer-output").inner_text()
    match = COUNTS.search(text)
    assert match, f"no counts in the explorer output:\n{text}"
    return text, tuple(int(n) for n in match.groups())


def wait_until_idle(page, timeout=240):
    """All cells have run: no `[*]` prompt left and the kernel is idle."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        busy = page.locator(".jp-InputPrompt", has_text="[*]").count()
        idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count()
        if busy == 0 and idle:
            return
        time.sleep(1)
    raise AssertionError("the notebook did not finish running")


def stable_screenshot(page, element, path, timeout=20):
    """Screenshot of `element` once two consecutive shots are identical (the
    output area has finished re-rendering and painting)."""
    previous = None
    deadline = time.time() + timeout
    while True:
        element.scroll_into_view_if_needed()
        shot = element.screenshot(path=path)
        if shot == previous or time.time() > deadline:
            return shot
        previous = shot
        page.wait_for_timeout(700)


def painted_figure(page, figure, path, differs_from=None, timeout=60):
    """Screenshot of the figure element once it is painted: not blank and, when
    `differs_from` is given, different from it (Chromium may paint a decoded
    image a little later under load). Returns (image, painted, changed
    fraction of pixels)."""
    deadline = time.time() + timeout
    while True:
        figure.scroll_into_view_if_needed()
        image = Image.open(io.BytesIO(figure.screenshot()))
        painted = np.asarray(image.convert("L"), dtype=float).std() > 20
        changed = region_change(differs_from, image) if painted and differs_from else 0.0
        done = painted and (differs_from is None or changed > 0.005)
        if done or time.time() > deadline:
            image.save(path)
            return image, painted, changed
        page.wait_for_timeout(1000)


def region_change(before: Image.Image, after: Image.Image) -> float:
    """Fraction of pixels that differ by more than 24 grey levels."""
    a = np.asarray(before.convert("RGB"), dtype=np.int16)
    b = np.asarray(after.convert("RGB").resize(before.size), dtype=np.int16)
    return float((np.abs(a - b).max(axis=2) > 24).mean())


@pytest.fixture
def screenshot_on_failure(page, request):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        page.screenshot(path=str(SCREENSHOTS / "page_on_failure.png"), full_page=True)


def test_anchor_explorer_slider_changes_drawing_and_counts(page, jupyterlab, screenshot_on_failure):
    committed = (KIT[0] / "notebooks" / NOTEBOOK).read_bytes()
    page.goto(f"{jupyterlab}/lab/tree/notebooks/{NOTEBOOK}")
    page.locator(".jp-Notebook").first.wait_for()
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=120_000)

    # Run All Cells; again if the kernel was not connected yet and nothing started.
    select = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
    ran = page.locator(".jp-InputPrompt", has_text=re.compile(r"\[(\*|\d+)\]"))
    for attempt in range(4):
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        deadline = time.time() + 20
        while not ran.count() and time.time() < deadline:
            if select.count():  # should JupyterLab ask for a kernel: the preselected one
                select.click()
            time.sleep(1)
        if ran.count():
            break
    assert ran.count(), "Run All Cells did not start any cell"
    explorer = page.locator(".anchor-explorer")
    explorer.wait_for(timeout=240_000)
    figure = page.locator(".anchor-explorer-output img")
    figure.wait_for()
    wait_until_idle(page)

    explorer.scroll_into_view_if_needed()
    # Readable in a 1400 px window: nothing of the explorer (controls, text,
    # figure) sticks out of the notebook's output area on the right.
    area = page.locator(".jp-OutputArea-output", has=explorer).first.bounding_box()
    for part in (explorer, page.locator(".anchor-explorer-output pre").first, figure):
        box_ = part.bounding_box()
        assert box_["x"] + box_["width"] <= area["x"] + area["width"] + 1, (box_, area)
    scroll = page.locator(".anchor-explorer-output").evaluate("e => e.scrollWidth - e.clientWidth")
    assert scroll <= 1, f"the explorer's text is cut off by {scroll} px"
    text_before, counts_before = explorer_counts(page)
    assert "stride_scale 8 " in text_before and sum(counts_before) == 588, text_before
    src_before = figure.get_attribute("src")
    figure.evaluate("img => img.decode()")
    stable_screenshot(page, explorer, str(SCREENSHOTS / "explorer_before.png"))
    fig_before, painted, _ = painted_figure(page, figure, SCREENSHOTS / "figure_before.png")
    assert painted, "the first figure is blank"

    # Drag the stride_scale handle to the left end of its track (1..12 -> 1).
    slider = page.locator(".anchor-explorer-stride-scale")
    handle = slider.locator(".noUi-handle")
    track = slider.locator(".noUi-target").bounding_box()
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + 2, box["y"] + box["height"] / 2, steps=12)
    page.mouse.up()

    deadline = time.time() + 60
    while time.time() < deadline:
        text_after, counts_after = explorer_counts(page)
        if text_after != text_before and figure.get_attribute("src") not in (None, src_before):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"the explorer did not update after moving the slider:\n{text_before}")
    wait_until_idle(page, timeout=60)
    page.wait_for_function("() => { const i = document.querySelector('.anchor-explorer-output img');"
                           " return i && i.complete && i.naturalWidth > 0; }")
    figure.evaluate("img => img.decode()")
    page.wait_for_timeout(1000)
    text_after, counts_after = explorer_counts(page)
    stable_screenshot(page, explorer, str(SCREENSHOTS / "explorer_after.png"))

    # The printed counts: same anchors, other labels; the slider's readout too.
    assert "stride_scale 1 (1:1 anchor 16 px)" in text_after, text_after
    assert sum(counts_after) == 588 and counts_after != counts_before
    # 16 px anchors are far smaller than every object here: none is foreground.
    assert counts_after[0] == 0 and counts_before[0] > 0
    assert slider.locator(".widget-readout").inner_text().strip() == "1"

    # The drawing, as painted on screen.
    fig_after, painted, changed = painted_figure(page, figure, SCREENSHOTS / "figure_after.png",
                                                 differs_from=fig_before)
    info = page.evaluate("() => [...document.querySelectorAll('.anchor-explorer-output img')].map("
                         "i => [i.naturalWidth, i.complete, JSON.stringify(i.getBoundingClientRect())])")
    # Real pictures (not blank boxes) that changed: the dots and anchors of other labels.
    assert painted, f"the new figure is blank after 60 s: {info}"
    assert changed > 0.005, f"only {changed:.4f} of the figure's pixels changed"
    # The controls did not move: the change is in the figure, not the layout.
    controls = slider.bounding_box()
    assert abs(controls["y"] - box["y"]) < 40
    assert (KIT[0] / "notebooks" / NOTEBOOK).read_bytes() == committed

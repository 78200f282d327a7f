"""The figure functions return matplotlib Figures with the expected artists."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import a4_helper as helper  # noqa: E402
from kit.data import GT_PADDING  # noqa: E402

IMAGE = torch.zeros(3, 64, 64)  # ImageNet-normalized grey-ish image


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _rects(ax, colour=None):
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    if colour is not None:
        rects = [r for r in rects if r.get_edgecolor() == to_rgba(colour)]
    return rects


def test_detection_visualizer():
    gt = torch.full((40, 5), GT_PADDING)
    gt[:2] = torch.tensor([[1.0, 2, 30, 40, 0], [10, 10, 20, 20, 2]])
    pred = torch.tensor([[0.0, 0, 10, 10, 1, 0.9], [5, 5, 50, 50, 2, 0.4], [1, 1, 2, 2, 0, 0.1]])
    fig = helper.detection_visualizer(IMAGE, ["a", "b", "c"], gt_boxes=gt, pred_boxes=pred)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(_rects(ax)) == 5
    assert len(_rects(ax, helper.PALETTE["gt"])) == 2
    first_gt = _rects(ax, helper.PALETTE["gt"])[0]
    assert (first_gt.get_x(), first_gt.get_y(), first_gt.get_width(), first_gt.get_height()) == (1, 2, 29, 38)
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["a", "a 0.10", "b 0.90", "c", "c 0.40"]
    assert ax.images[0].get_array().shape == (64, 64, 3)

    # Boxes without class/score, scores passed separately, into a given Axes.
    fig2, ax2 = plt.subplots()
    out = helper.detection_visualizer(IMAGE, ["a"], pred_boxes=torch.tensor([[0.0, 0, 5, 5]]),
                                      pred_scores=torch.tensor([0.5]), ax=ax2)
    assert out is fig2 and len(_rects(ax2)) == 1 and ax2.texts[0].get_text() == "0.50"


def test_draw_anchors():
    anchors = torch.tensor([[0.0, 0, 8, 8], [8, 8, 16, 16], [16, 16, 32, 32], [1, 1, 3, 3]])
    fig = helper.draw_anchors(IMAGE, anchors, centers=torch.tensor([[4.0, 4], [12, 12]]))
    assert isinstance(fig, Figure)
    assert len(_rects(fig.axes[0], "yellow")) == 4
    assert fig.axes[0].collections[0].get_offsets().shape == (2, 2)
    fig = helper.draw_anchors(IMAGE, anchors, max_anchors=2)
    assert len(_rects(fig.axes[0])) == 2


def test_draw_matches():
    from two_stage_detector import BACKGROUND, NEUTRAL

    anchors = torch.arange(24.0).reshape(6, 4).sort(dim=1).values
    matched = torch.tensor([
        [1.0, 1, 9, 9, 0], [1, 1, 9, 9, 1],  # foreground
        [NEUTRAL] * 5,
        [BACKGROUND] * 5, [BACKGROUND] * 5, [BACKGROUND] * 5,
    ])
    gt = torch.full((40, 5), GT_PADDING)
    gt[0] = torch.tensor([1.0, 1, 9, 9, 0])
    fig = helper.draw_matches(IMAGE, anchors, matched, gt, max_background=2)
    ax = fig.axes[0]
    palette = helper.PALETTE
    assert len(_rects(ax, palette["foreground"])) == 2
    assert len(_rects(ax, palette["neutral"])) == 1
    assert len(_rects(ax, palette["background"])) == 2  # 3 background anchors, 2 drawn
    assert len(_rects(ax, palette["gt"])) == 1
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "foreground (2)" and labels[2].startswith("background (3")


def test_draw_proposals():
    before = torch.tensor([[0.0, 0, 10, 10]] * 30)
    after = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]])
    fig = helper.draw_proposals(IMAGE, before, after, topk=5)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert len(_rects(fig.axes[0])) == 5 and len(_rects(fig.axes[1])) == 2
    assert "before" in fig.axes[0].get_title() and "after" in fig.axes[1].get_title()
    gt = torch.full((40, 5), GT_PADDING)
    gt[0] = torch.tensor([2.0, 2, 30, 30, 1])
    fig = helper.draw_proposals(IMAGE, before, after, topk=5, gt_boxes=gt)
    assert [len(_rects(ax, helper.PALETTE["gt"])) for ax in fig.axes] == [1, 1]
    assert len(_rects(fig.axes[0])) == 6


def test_labels_of_boxes_at_the_top_edge_stay_inside_the_image():
    gt = torch.full((40, 5), GT_PADDING)
    gt[:2] = torch.tensor([[5.0, 0, 30, 20, 0], [5, 30, 30, 50, 1]])
    fig = helper.detection_visualizer(IMAGE, ["top", "low"], gt_boxes=gt)
    texts = {t.get_text(): t for t in fig.axes[0].texts}
    # y grows downwards: "top" hangs below y = 0 (inside its box), "low" sits above its box.
    assert texts["top"].get_va() == "top" and texts["low"].get_va() == "bottom"
    fig.canvas.draw()
    box = texts["top"].get_window_extent()
    axes_box = fig.axes[0].get_window_extent()
    assert box.y1 <= axes_box.y1 + 0.5  # not above the image, where it would be clipped away


def test_one_palette_in_the_helpers_and_the_explorer():
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(helper.__file__).parent / "notebooks"))
    import anchor_explorer

    assert anchor_explorer.GT_COLOR == helper.PALETTE["gt"]
    assert anchor_explorer.LABEL_COLORS == {
        anchor_explorer.LABEL_FOREGROUND: helper.PALETTE["foreground"],
        anchor_explorer.LABEL_NEUTRAL: helper.PALETTE["neutral"],
        anchor_explorer.LABEL_BACKGROUND: helper.PALETTE["background"]}


def test_plot_losses_short_history_shows_points():
    history = {"iter": [0, 1, 2], "loss": [3.0, 2.9, 2.8], "loss_a": [1.0, 0.9, 0.8], "lr": [0.1] * 3}
    fig = helper.plot_losses(history)
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["loss", "loss_a"]
    assert all(len(line.get_ydata()) == 3 and line.get_marker() == "o" for line in lines)


def test_plot_losses():
    history = {"iter": list(range(50)), "loss": [2.0 - i / 50 for i in range(50)],
               "loss_a": [1.0] * 50, "loss_b": [1.0 - i / 50 for i in range(50)], "lr": [0.1] * 50}
    fig = helper.plot_losses(history, smooth=10)
    assert isinstance(fig, Figure)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["loss (raw)", "loss", "loss_a", "loss_b"]
    # Moving average over 10 iterations: 41 points, the first is the mean of 0..9.
    smoothed = fig.axes[0].get_lines()[1].get_ydata()
    assert len(smoothed) == 41 and smoothed[0] == pytest.approx(2.0 - 4.5 / 50)

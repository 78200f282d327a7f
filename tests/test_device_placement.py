"""
Device placement without a GPU: the reference detector, the fast path, the
training loop and the evaluation run on a simulated GPU (`simulated_gpu.py`:
CPU tensors tagged as CUDA ones, and an error on any operation that mixes them
with host tensors). A tensor created on the wrong device fails here, on CPU CI.

On a machine with a GPU the same tests also run on the real one (the "cuda"
cases; `make gpu-check` runs them), where the outputs are compared with CPU
results to a tolerance instead of exactly.
"""
import contextlib
import copy

import pytest
import torch
import torchvision

import a4_helper as helper
import fast_detector
from common import DetectorBackboneWithFPN, class_spec_nms, get_fpn_location_coords, nms
from fast_detector import FastFasterRCNN
from simulated_gpu import DeviceMismatchError, SimulatedGPU
from two_stage_detector import RPN, FasterRCNN

IMAGE_SIZE = 64
NUM_CLASSES = 3


# ------------------------------------------------------- the simulator itself
def test_simulator_flags_wrong_device_tensors():
    with SimulatedGPU() as gpu:
        x = torch.ones(4).to("cuda")
        assert gpu.is_on_gpu(x) and x.device == torch.device("cuda", 0) and x.is_cuda
        assert gpu.is_on_gpu(x * 2) and gpu.is_on_gpu(x.new_zeros(3))
        assert gpu.is_on_gpu(torch.arange(4, device=x.device)) and gpu.is_on_gpu(torch.zeros_like(x))
        host = torch.arange(4)  # no device: the host, as on a real GPU machine
        assert not gpu.is_on_gpu(host) and not gpu.is_on_gpu(x.cpu())
        with pytest.raises(DeviceMismatchError):
            x + host
        with pytest.raises(DeviceMismatchError):
            torch.cat([x, host.float()])
        with pytest.raises(DeviceMismatchError):
            x[host.bool()]
        with pytest.raises(DeviceMismatchError):
            x.numpy()
        x + torch.tensor(2.0)  # a 0-dim host tensor mixes, as CUDA allows
        assert x.sum().item() == 4 and x.cpu().numpy().sum() == 4
        # Gradients of tagged leaves are tagged.
        w = torch.ones(3, requires_grad=True).cuda()
        w.retain_grad()
        (w * 2).sum().backward()
        assert gpu.is_on_gpu(w.grad)


def test_simulator_finds_a_module_with_a_host_constant():
    class Bad(torch.nn.Module):
        def forward(self, x):
            return x + torch.linspace(0, 1, x.shape[-1])  # no device=

    with SimulatedGPU():
        with pytest.raises(DeviceMismatchError, match="add"):
            Bad()(torch.zeros(2, 5, device="cuda"))


# ---------------------------------------------------------------- detector
class RealGPU(contextlib.nullcontext):
    """The real CUDA device, with the simulator's `is_on_gpu`."""

    @staticmethod
    def is_on_gpu(tensor) -> bool:
        return tensor.is_cuda


@pytest.fixture(params=["simulated", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def gpu(request):
    """A context manager for the device under test, and `is_on_gpu`."""
    return SimulatedGPU() if request.param == "simulated" else RealGPU()


def small_detector():
    torch.manual_seed(0)
    backbone = DetectorBackboneWithFPN(8, pretrained=False)
    rpn = RPN(8, [8], batch_size_per_image=16, anchor_stride_scale=3, pre_nms_topk=30,
              post_nms_topk=10)
    return FasterRCNN(backbone, rpn, [8], NUM_CLASSES, batch_size_per_image=16)


def batch(num_images=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(num_images, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)
    gt = torch.full((num_images, 4, 5), -1.0)
    gt[0, :2] = torch.tensor([[4.0, 6.0, 40.0, 30.0, 0.0], [20.0, 20.0, 60.0, 62.0, 2.0]])
    gt[1, :1] = torch.tensor([[0.0, 0.0, 30.0, 50.0, 1.0]])
    return images, gt


@pytest.fixture(scope="module")
def detector():
    return small_detector()


@pytest.mark.parametrize("kind", ["reference", "fast"])
def test_training_step_on_the_gpu(kind, detector, gpu):
    model = copy.deepcopy(detector)
    if kind == "fast":
        model = FastFasterRCNN.from_reference(model)
    images, gt = batch()
    with gpu:
        model.to("cuda").train()
        assert all(gpu.is_on_gpu(p) for p in model.parameters())
        losses = model(images.to("cuda"), gt.to("cuda"))
        assert set(losses) == {"loss_rpn_obj", "loss_rpn_box", "loss_cls"}
        assert all(gpu.is_on_gpu(v) for v in losses.values())
        sum(losses.values()).backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(gpu.is_on_gpu(g) for g in grads)


def test_fast_path_takes_its_gpu_branches_there(detector, monkeypatch, gpu):
    # On the simulated GPU the fast path picks its CUDA choice (torchvision's
    # RoI-Align instead of the separable one), so that runs under the check too.
    calls = []
    monkeypatch.setattr(fast_detector, "roi_align_separable",
                        lambda *a, _f=fast_detector.roi_align_separable: calls.append("cpu") or _f(*a))
    monkeypatch.setattr(fast_detector.torchvision.ops, "roi_align",
                        lambda *a, _f=torchvision.ops.roi_align, **k: calls.append("gpu") or _f(*a, **k))
    model = FastFasterRCNN.from_reference(copy.deepcopy(detector))
    images, gt = batch()
    with gpu:
        model.to("cuda").train()
        model(images.to("cuda"), gt.to("cuda"))
    assert calls and set(calls) == {"gpu"}


@pytest.mark.parametrize("kind", ["reference", "fast"])
def test_inference_on_the_gpu(kind, detector, gpu, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # compare with the CPU
    model = copy.deepcopy(detector)
    images, _ = batch(seed=1)
    cpu_out = (model.eval()(images[:1], None, 0.0, 0.5) if kind == "reference"
               else FastFasterRCNN.from_reference(copy.deepcopy(detector)).eval().predict(
                   images, 0.0, 0.5)[0])
    if kind == "fast":
        model = FastFasterRCNN.from_reference(model)
    with gpu:
        model.to("cuda").eval()
        with torch.no_grad():
            out = (model(images[:1].to("cuda"), None, 0.0, 0.5) if kind == "reference"
                   else model.predict(images.to("cuda"), 0.0, 0.5)[0])
        assert all(gpu.is_on_gpu(t) for t in out)
        out = [t.cpu() for t in out]
    if isinstance(gpu, SimulatedGPU):  # the same arithmetic, on the CPU
        for got, expected in zip(out, cpu_out):
            torch.testing.assert_close(got, expected)
    else:  # other kernels: the top scores agree closely
        torch.testing.assert_close(out[2][:5], cpu_out[2][:5], rtol=1e-2, atol=1e-3)


def test_common_ops_follow_their_inputs(gpu):
    g = torch.Generator().manual_seed(2)
    xy = torch.rand(300, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(300, 2, generator=g) * 30], dim=1)
    scores = torch.rand(300, generator=g)
    classes = torch.randint(0, 3, (300,), generator=g)
    expected = nms(boxes, scores, 0.5)
    with gpu:
        keep = nms(boxes.cuda(), scores.cuda(), 0.5)
        assert gpu.is_on_gpu(keep)
        assert gpu.is_on_gpu(class_spec_nms(boxes.cuda(), scores.cuda(), classes.cuda(), 0.5))
        feat = torch.zeros(1, 8, 4, 4, device="cuda")
        coords = get_fpn_location_coords({"p3": feat.shape}, {"p3": 8}, device=feat.device)
        assert gpu.is_on_gpu(coords["p3"])
        keep = keep.cpu()
    torch.testing.assert_close(keep, expected)


# ----------------------------------------------------- training and evaluation
class TinyShapes(torch.utils.data.Dataset):
    """Random images and GT in the dataset's format `(path, image, gt (40, 5))`."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        images, gt = batch(num_images=2, seed=i)
        padded = torch.full((40, 5), -1.0)
        padded[: len(gt[0])] = gt[0]
        return f"img{i}.png", images[0], padded


@pytest.mark.parametrize("kind", ["reference", "fast"])
def test_train_detector_and_evaluation_on_the_gpu(kind, detector, tmp_path, gpu):
    model = copy.deepcopy(detector)
    if kind == "fast":
        model = FastFasterRCNN.from_reference(model)
    loader = torch.utils.data.DataLoader(TinyShapes(), batch_size=2)
    # The demo's recipe (AdamW, cosine) for the fast path, the course's for the reference.
    recipe = dict(optimizer="adamw", schedule="cosine") if kind == "fast" else {}
    with gpu:
        history = helper.train_detector(
            model, loader, learning_rate=1e-3, max_iters=3, log_period=1, device="cuda",
            checkpoint_path=str(tmp_path / "ckpt.pt"), warmup_iters=1, grad_clip=10.0,
            progress=False, **recipe,
        )
        assert len(history["loss"]) == 3
        expected_lr = [1e-3, 0.75e-3, 0.25e-3] if kind == "fast" else [1e-3, 1e-4, 1e-5]
        assert history["lr"] == pytest.approx(expected_lr)
        result = helper.inference_with_detector(model, loader, ["a", "b", "c"],
                                                score_thresh=0.0, nms_thresh=0.5,
                                                device="cuda")
    assert 0.0 <= result["map50"] <= 1.0

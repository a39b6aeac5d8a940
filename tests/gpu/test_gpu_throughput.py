"""GPU only (skipped without CUDA; CI has none): ResNet-34 through the pipeline's own
``fit`` on CIFAR-shaped random data, reporting images/s."""

import time

import numpy as np
import pytest
import torch

from selfdistill.augment import InputPipeline, build_augment
from selfdistill.data import Split
from selfdistill.models import build_model
from selfdistill.objectives import CrossEntropy
from selfdistill.train import TrainConfig, fit

pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_resnet34_fit_throughput():
    rng = np.random.default_rng(0)
    n = 128 * 100  # 100 steps per epoch
    train = Split(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
                  rng.integers(0, 100, n).astype(np.int64), "train")
    val = Split(train.x[:1024], train.y[:1024], "val")
    pipe = InputPipeline(build_augment("crop_flip", (0.0,), 4),
                         {"mean": [0.5071, 0.4867, 0.4408], "std": [0.2675, 0.2565, 0.2761]})
    cfg = TrainConfig(epochs=3, milestones=(), seed=0, channels_last=True, precision="bf16",
                      deterministic=False)
    torch.manual_seed(0)
    model = build_model("resnet34", 100, (3, 32, 32))
    t0 = time.perf_counter()
    result = fit(model, CrossEntropy(), train, val, cfg, torch.device("cuda"), pipeline=pipe)
    torch.cuda.synchronize()
    steady = result.history[-1]["train_step_s"]
    print(f"ResNet-34 bs128 bf16 channels_last: {n / steady:.0f} images/s (steady epoch), "
          f"{3 * n / (time.perf_counter() - t0):.0f} images/s overall")
    assert all(np.isfinite(r["train_loss"]) for r in result.history)


@pytest.mark.parametrize("method", ["ce", "sd", "bs", "ls", "er"])
@pytest.mark.parametrize("kind", ["images", "signals"])
def test_training_steps_never_synchronise_the_host(kind, method):
    """Every optimiser step of ``fit`` on CUDA runs under
    ``torch.cuda.set_sync_debug_mode("error")``: a blocking copy, ``.item()`` or any other
    host synchronisation inside the step loop raises. Images: crop+flip augmentation,
    normalisation, channels_last, bf16, the SD teacher on each augmented batch; signals:
    no augmentation, so the SD teacher's logits are precomputed and indexed per step."""
    from selfdistill.objectives import (
        BetaSmoothing,
        EntropyRegularization,
        LabelSmoothing,
        SelfDistillation,
    )
    from selfdistill.train import derive_seed

    rng = np.random.default_rng(0)
    n = 128 * 6
    if kind == "images":
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        arch, shape, aug = "resnet18", (3, 32, 32), "crop_flip"
        pipe = InputPipeline(build_augment("crop_flip", (0.0,), 4),
                             {"mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]})
    else:
        x = rng.normal(size=(n, 1, 40)).astype(np.float32)
        arch, shape, aug = "cnn1d", (1, 40), "none"
        pipe = InputPipeline(build_augment("none"))
    train = Split(x, rng.integers(0, 10, n).astype(np.int64), "train")
    val = Split(train.x[:256], train.y[:256], "val")
    dev = torch.device("cuda")
    torch.manual_seed(1)
    other = build_model(arch, 10, shape).to(dev)
    objective = {"ce": lambda: CrossEntropy(),
                 "sd": lambda: SelfDistillation(other),
                 "bs": lambda: BetaSmoothing(
                     other, a=3.0, alpha=0.6,
                     generator=torch.Generator().manual_seed(derive_seed(0, "b"))),
                 "ls": lambda: LabelSmoothing(0.1),
                 "er": lambda: EntropyRegularization(0.3)}[method]()
    cfg = TrainConfig(epochs=2, milestones=(1,), seed=0, augment=aug,
                      channels_last=kind == "images", precision="bf16", deterministic=False)
    model = build_model(arch, 10, shape)
    result = fit(model, objective, train, val, cfg, dev, pipeline=pipe, sync_check=True)
    assert torch.cuda.get_sync_debug_mode() == 0  # restored after the loop
    assert all(np.isfinite(r["train_loss"]) for r in result.history)

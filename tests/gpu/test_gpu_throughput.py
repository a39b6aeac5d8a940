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

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_resnet34_fit_throughput():
    rng = np.random.default_rng(0)
    n = 128 * 100  # 100 steps per epoch
    train = Split(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
                  rng.integers(0, 100, n).astype(np.int64), "train")
    val = Split(train.x[:1024], train.y[:1024], "val")
    pipe = InputPipeline(build_augment("crop_flip", (0.0,), 4),
                         {"mean": [0.5071, 0.4867, 0.4408], "std": [0.2675, 0.2565, 0.2761]})
    cfg = TrainConfig(epochs=3, milestones=(), seed=0, channels_last=True, bf16=True,
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

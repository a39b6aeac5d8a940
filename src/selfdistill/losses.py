"""Training objectives, exactly as methods §3 (public names of methods §7).

Every function takes the logits ``[n, K]`` of the network being trained and int64
targets ``[n]`` and returns the batch-mean loss as a scalar tensor. Gradients flow into
``logits`` only: teacher and ranking-network logits are detached here, whatever the caller
passes. ``log p`` is computed with ``log_softmax`` (methods §3, not ``log(p + 1e-8)``).
Keyword defaults here (SD's alpha and T, BS's alpha, LS's spread) are the methods' only
defaults: :mod:`selfdistill.methods` reads them as each method's config options.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "beta_smoothing",
    "beta_targets",
    "cross_entropy",
    "entropy_regularized",
    "label_smoothing",
    "self_distillation",
    "soft_cross_entropy",
    "smoothed_targets",
]


def soft_cross_entropy(target_probs: Tensor, logits: Tensor) -> Tensor:
    """H(q, p) = -sum_k q_k log p_k, batch mean; ``q`` [n, K] is treated as a constant."""
    log_p = F.log_softmax(logits, dim=1)  # [n, K]
    return -(target_probs.detach() * log_p).sum(dim=1).mean()


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """CE, methods §3.1: mean of -log p_y."""
    return F.cross_entropy(logits, targets)


def smoothed_targets(targets: Tensor, num_classes: int, on_value: Tensor | float) -> Tensor:
    """Targets ``[n, K]``: ``on_value`` on y, (1 - on)/(K - 1) on every other class.

    The paper's convention (methods §3.2, §3.5). ``on_value`` is a scalar or one value per
    example ``[n]`` (Beta smoothing). A Python scalar never becomes a tensor of its own: the
    two float32 values are computed on the host (numpy float32, the same roundings as torch's
    float32 ops) and filled in by the kernels, so no host-to-device copy happens per step.
    """
    n = targets.shape[0]
    if not isinstance(on_value, Tensor):
        on32 = np.float32(on_value)
        off32 = (np.float32(1.0) - on32) / np.float32(num_classes - 1)
        q = torch.full((n, num_classes), float(off32), dtype=torch.float32,
                       device=targets.device)  # [n, K]
        return q.scatter_(1, targets.view(-1, 1), float(on32))
    on = on_value.to(device=targets.device, dtype=torch.float32)
    on = on.reshape(-1, 1) if on.ndim else on.expand(n, 1)  # [n, 1]
    off = (1.0 - on) / (num_classes - 1)  # [n, 1]
    q = off.expand(n, num_classes).clone()  # [n, K]
    return q.scatter(1, targets.view(-1, 1), on)


def label_smoothing(logits: Tensor, targets: Tensor, eps: float,
                    spread: str = "others") -> Tensor:
    """LS, methods §3.2: H(q, p) with q = 1-ε on y and ε/(K-1) elsewhere; no CE mixing.

    ``spread="uniform"`` is the optional ε/K convention (q = 1-ε+ε/K on y, ε/K elsewhere).
    """
    num_classes = logits.shape[1]
    if spread == "others":
        q = smoothed_targets(targets, num_classes, 1.0 - eps)
    elif spread == "uniform":
        q = torch.full_like(logits, eps / num_classes, dtype=torch.float32)
        q = q.scatter(1, targets.view(-1, 1), 1.0 - eps + eps / num_classes)
    else:
        raise ValueError(f"label_smoothing: spread must be 'others' or 'uniform', got {spread!r}")
    return soft_cross_entropy(q, logits)


def entropy_regularized(logits: Tensor, targets: Tensor, beta: float) -> Tensor:
    """ER (confidence penalty), methods §3.3: CE - β·mean_i H(p_i), H(p) = -Σ p log p."""
    log_p = F.log_softmax(logits, dim=1)  # [n, K]
    entropy = -(log_p.exp() * log_p).sum(dim=1).mean()
    return F.nll_loss(log_p, targets) - beta * entropy


def self_distillation(logits: Tensor, targets: Tensor, teacher_logits: Tensor,
                      alpha: float = 0.4, temperature: float = 4.0,
                      student_temperature: bool = False, t_squared: bool = False) -> Tensor:
    """SD, methods §3.4: (1-α)·CE + α·H(softmax(z_t/T), p_student).

    The student is NOT divided by T and there is no T² factor unless the options
    ``student_temperature`` / ``t_squared`` (off by default, methods §3.4) ask for them.
    """
    q = F.softmax(teacher_logits.detach().float() / temperature, dim=1)  # [n, K]
    student = logits / temperature if student_temperature else logits
    distill = soft_cross_entropy(q, student)
    if t_squared:
        distill = distill * temperature**2
    return (1.0 - alpha) * F.cross_entropy(logits, targets) + alpha * distill


def beta_targets(targets: Tensor, num_classes: int, ranking_logits: Tensor,
                 beta_samples: Tensor) -> Tensor:
    """Beta-smoothing targets, methods §3.5 steps 2-4.

    c_i = ranking network's probability of y_i; the sorted Beta(a, 1) draws are paired by
    rank with the sorted c (least confident example gets the smallest b); target is b_i on
    y_i and (1 - b_i)/(K - 1) on every other class.
    """
    n = targets.shape[0]
    if beta_samples.ndim != 1 or beta_samples.shape[0] != n:
        raise ValueError(f"beta_samples must be 1-D with {n} entries, got shape "
                         f"{tuple(beta_samples.shape)}")
    probs = F.softmax(ranking_logits.detach().float(), dim=1)  # [n, K]
    conf = probs.gather(1, targets.view(-1, 1)).squeeze(1)  # [n]
    order = torch.argsort(conf, stable=True)  # ascending confidence
    b_sorted = torch.sort(beta_samples.detach().float().to(conf.device)).values
    b = torch.empty_like(b_sorted).scatter_(0, order, b_sorted)  # b[order[r]] = r-th smallest
    return smoothed_targets(targets, num_classes, b)


def beta_smoothing(logits: Tensor, targets: Tensor, ranking_logits: Tensor,
                   beta_samples: Tensor, alpha: float = 0.6) -> Tensor:
    """BS, methods §3.5 step 5: (1-α)·CE + α·mean_i H(target_i, p_i)."""
    q = beta_targets(targets, logits.shape[1], ranking_logits, beta_samples)
    return (1.0 - alpha) * F.cross_entropy(logits, targets) + alpha * soft_cross_entropy(q, logits)


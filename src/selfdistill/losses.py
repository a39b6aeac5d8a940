"""Training objectives, exactly as methods §3 (public names of methods §7).

Every function takes the logits ``[n, K]`` of the network being trained and int64
targets ``[n]`` and returns the batch-mean loss as a scalar tensor. Gradients flow into
``logits`` only: teacher and ranking-network logits are detached here, whatever the caller
passes. ``log p`` is computed with ``log_softmax`` (methods §3, not ``log(p + 1e-8)``).
Keyword defaults here (SD's alpha and T, BS's alpha, LS's spread, and those of the
teacher-free family of methods §3.6-§3.11) are the methods' only defaults:
:mod:`selfdistill.methods` reads them as each method's config options.
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
    "cskd",
    "entropy_regularized",
    "label_smoothing",
    "ols",
    "pskd",
    "pskd_alpha",
    "self_distillation",
    "soft_cross_entropy",
    "smoothed_targets",
    "tfkd_reg",
    "tfkd_self",
    "zipf",
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



# --- the teacher-free family (methods §3.6-§3.11) ----------------------------------------


def _kl_rows(log_q: Tensor, log_p: Tensor) -> Tensor:
    """Per-row KL(q ‖ p) = Σ_k q_k (log q_k - log p_k) ``[n]``; ``log_q`` is a constant."""
    log_q = log_q.detach()
    return (log_q.exp() * (log_q - log_p)).sum(dim=1)


def _check_like(name: str, other: Tensor, logits: Tensor) -> None:
    """ValueError unless ``other`` has the shape of ``logits`` [n, K]."""
    if other.shape != logits.shape:
        raise ValueError(f"{name} must have the logits' shape {tuple(logits.shape)}, got "
                         f"{tuple(other.shape)}")


def tfkd_reg(logits: Tensor, targets: Tensor, a: float = 0.99, temperature: float = 20.0,
             alpha: float = 0.1, multiplier: float = 100.0, form: str = "code") -> Tensor:
    """Tf-KD_reg, methods §3.6 (virtual teacher); logits [n, K], targets [n].

    The virtual teacher p^d puts ``a`` on y and (1-a)/(K-1) elsewhere, q = softmax(p^d/T).

    - ``form="code"`` (the official code, default):
      L = (1-α)·CE + α·m·KLmean(q ‖ softmax(z)). Quirks kept: the softmax is taken of
      *probabilities* p^d (so q is near-uniform), the student stays at T = 1, there is no T²,
      and KLmean is the legacy ``nn.KLDivLoss()`` reduction, the elementwise terms summed
      over all n·K entries and divided by n·K (batch-mean KL ÷ K), times the multiplier m.
    - ``form="paper"`` (Eq. 9): L = (1-α)·CE + α·KL_batchmean(q ‖ softmax(z/T)): the student
      is softened too, no m, no ÷K. The paper does not define the softening operator for
      p^d, so the same q = softmax(p^d/T) is used; ``multiplier`` is ignored in this form.
    """
    if form not in ("code", "paper"):
        raise ValueError(f"tfkd_reg: form must be 'code' or 'paper', got {form!r}")
    n, num_classes = logits.shape
    teacher = torch.full_like(logits, (1.0 - a) / (num_classes - 1)).detach()  # [n, K]
    teacher = teacher.scatter(1, targets.view(-1, 1), a)
    log_q = F.log_softmax(teacher / temperature, dim=1)  # [n, K]
    log_p = F.log_softmax(logits, dim=1)  # [n, K]
    ce = F.nll_loss(log_p, targets)
    if form == "code":
        distill = multiplier * _kl_rows(log_q, log_p).sum() / (n * num_classes)
    else:
        distill = _kl_rows(log_q, F.log_softmax(logits / temperature, dim=1)).mean()
    return (1.0 - alpha) * ce + alpha * distill


def tfkd_self(logits: Tensor, targets: Tensor, teacher_logits: Tensor, alpha: float = 0.95,
              temperature: float = 6.0, multiplier: float = 50.0) -> Tensor:
    """Tf-KD_self, methods §3.7: (1-α)·CE + α·T²·m·KLmean(softmax(z_t/T) ‖ softmax(z/T)).

    logits, teacher_logits [n, K] (teacher detached), targets [n]. Quirk kept (official
    code): KLmean is the legacy ``nn.KLDivLoss()`` reduction, the elementwise terms summed
    over all n·K entries ÷ n·K (batch-mean KL ÷ K), scaled by the multiplier m and T²;
    CE is at T = 1.
    """
    _check_like("teacher_logits", teacher_logits, logits)
    n, num_classes = logits.shape
    z_t = teacher_logits.detach().to(logits.dtype)  # [n, K]
    log_q = F.log_softmax(z_t / temperature, dim=1)
    log_p_t = F.log_softmax(logits / temperature, dim=1)
    kl_mean = _kl_rows(log_q, log_p_t).sum() / (n * num_classes)
    ce = F.cross_entropy(logits, targets)
    return (1.0 - alpha) * ce + alpha * temperature**2 * multiplier * kl_mean


def pskd_alpha(epoch: int, epochs: int, alpha_T: float = 0.8) -> float:
    """PS-KD's schedule, methods §3.8: α_t = max(0, α_T·(t+1)/E) for the 0-based epoch t.

    ``alpha_T`` is the paper's α_T (the final weight on the previous prediction), ``epochs``
    is E. Quirk kept (official code): the last epoch (t = E-1) reaches α_T itself.
    """
    if epochs < 1 or epoch < 0:
        raise ValueError(f"pskd_alpha: need epochs >= 1 and epoch >= 0, got epoch={epoch}, "
                         f"epochs={epochs}")
    return max(0.0, alpha_T * (epoch + 1) / epochs)


def pskd(logits: Tensor, targets: Tensor, prev_probs: Tensor, alpha_t: float) -> Tensor:
    """PS-KD, methods §3.8: mean_i Σ_k -t_ik·log_softmax(z_i)_k.

    t = (1-α_t)·onehot(y) + α_t·prev_probs, with prev_probs [n, K] the previous epoch's
    softmax rows of these samples (detached) and α_t from :func:`pskd_alpha` (the caller's
    schedule). Quirk kept (official code): no separate CE term and no temperature.
    """
    _check_like("prev_probs", prev_probs, logits)
    onehot = F.one_hot(targets, logits.shape[1]).to(logits.dtype)  # [n, K]
    target = (1.0 - alpha_t) * onehot + alpha_t * prev_probs.detach().to(logits.dtype)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def cskd(logits: Tensor, targets: Tensor, partner_logits: Tensor, temperature: float = 4.0,
         lam: float = 1.0) -> Tensor:
    """CS-KD, methods §3.9: CE(z_a, y) + λ·T²·(1/n_a)·Σ_i KL(softmax(z_p,i/T) ‖ softmax(z_a,i/T)).

    ``logits`` [n_a, K] are the anchors' only; ``partner_logits`` [n_a, K] come from a
    same-class partner of each anchor (detached). Quirk kept (official code): the KL is
    reduced as sum ÷ n_a (batchmean) and the CE sits on the anchors alone, weight 1.
    """
    _check_like("partner_logits", partner_logits, logits)
    z_p = partner_logits.detach().to(logits.dtype)  # [n_a, K]
    log_q = F.log_softmax(z_p / temperature, dim=1)
    kl = _kl_rows(log_q, F.log_softmax(logits / temperature, dim=1)).mean()
    return F.cross_entropy(logits, targets) + lam * temperature**2 * kl


def _zipf_log_targets(targets: Tensor, dense_logits: Tensor, power: float,
                      keep: Tensor) -> Tensor:
    """log u ``[n, K-1]``: Zipf targets over the non-target classes from the dense votes."""
    n, num_classes, _ = dense_logits.shape
    votes = F.one_hot(dense_logits.argmax(dim=1), num_classes).sum(dim=1)  # [n, K]
    # r_ik = 1 + #{j: v_ij > v_ik}: ties share the smallest rank; target included
    ranks = 1 + (votes[:, None, :] > votes[:, :, None]).sum(dim=2)  # [n, K]
    ranks = ranks.gather(1, keep).to(dense_logits.dtype)  # [n, K-1]
    return F.log_softmax(-power * ranks.log(), dim=1)  # u ∝ r^(-power), renormalised


def zipf(logits: Tensor, targets: Tensor, dense_logits: Tensor, lam: float = 0.1,
         power: float = 1.0) -> Tensor:
    """Zipf's LS, methods §3.10: CE + λ·mean_i KL(u_i ‖ softmax(z_i without y_i)).

    dense_logits [n, K, P]: the classifier applied at each of P positions (detached). Each
    position votes for its argmax; v_ik counts the votes; r_ik = 1 + #{j: v_ij > v_ik} ranks
    all K classes, target included (ties share the smallest rank). The target column is
    dropped and u_ik ∝ r_ik^(-power) is renormalised over the K-1 others. The KL's softmax
    is over the K-1 non-target logits. Quirk kept (official code): CE has weight 1, not 1-λ.
    """
    n, num_classes = logits.shape
    if dense_logits.ndim != 3 or dense_logits.shape[:2] != logits.shape:
        raise ValueError(f"dense_logits must be [n, K, P] with [n, K] = {tuple(logits.shape)}, "
                         f"got {tuple(dense_logits.shape)}")
    # [n, K-1] column indices of the non-target classes: a gather, not a boolean mask (a mask
    # index is a nonzero, which synchronises the host on CUDA at every step)
    cols = torch.arange(num_classes - 1, device=logits.device).expand(n, -1)
    keep = cols + (cols >= targets.view(-1, 1)).long()
    with torch.no_grad():
        log_u = _zipf_log_targets(targets, dense_logits.detach().to(logits.dtype), power, keep)
    others = logits.gather(1, keep)  # [n, K-1]
    kl = _kl_rows(log_u, F.log_softmax(others, dim=1)).mean()
    return F.cross_entropy(logits, targets) + lam * kl


def ols(logits: Tensor, targets: Tensor, soft_matrix: Tensor, alpha: float = 0.5) -> Tensor:
    """Online LS, methods §3.11: (1-α)·CE + α·(1/n)·Σ_i Σ_k -S[y_i,k]·log_softmax(z_i)_k.

    soft_matrix S [K, K] (row c: the previous epoch's mean softmax of the correctly
    classified samples of class c) is a constant (detached). Quirk kept: the official code
    hard-codes the 0.5/0.5 split (its ``--olsalpha`` is parsed but never read); ``alpha`` is
    that split, and the default 0.5 is the official behaviour.
    """
    num_classes = logits.shape[1]
    if soft_matrix.shape != (num_classes, num_classes):
        raise ValueError(f"soft_matrix must be [K, K] with K = {num_classes}, got "
                         f"{tuple(soft_matrix.shape)}")
    log_p = F.log_softmax(logits, dim=1)  # [n, K]
    rows = soft_matrix.detach().to(logits.dtype)[targets]  # [n, K]
    soft = -(rows * log_p).sum(dim=1).mean()
    return (1.0 - alpha) * F.nll_loss(log_p, targets) + alpha * soft

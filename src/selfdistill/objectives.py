"""Per-method training objectives with the state they carry (methods §3).

An objective turns the student's logits on an augmented batch into a loss; SD holds the
frozen teacher (eval mode, same augmented batch, methods §3.4) and BS the EMA ranking
network and its seeded Beta(a, 1) sampler (methods §3.5). The teacher and the ranking
network always run outside autocast (:func:`full_precision`): their logits are fp32 under
every ``execution.precision``. The loss formulas themselves live in
:mod:`selfdistill.losses`; a constructor passes its keyword options through to its loss,
whose signature holds their defaults (methods §7). The registry that builds objectives is
:mod:`selfdistill.methods`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from . import losses
from .augment import host_to_device

__all__ = ["BetaSmoothing", "CrossEntropy", "EntropyRegularization", "LabelSmoothing",
           "Objective", "SelfDistillation", "full_precision"]


def full_precision(x: Tensor) -> torch.autocast:
    """Autocast off on ``x``'s device: a frozen network's forward inside the student's bf16
    autocast region (``execution.precision: bf16``) gives fp32 logits, computed in fp32,
    rather than bf16 logits cast back. A no-op where autocast is off (fp32, tf32, the CPU)."""
    return torch.autocast(x.device.type, enabled=False)


class Objective:
    """Base: stateless loss of the student's logits. Subclasses add teachers or EMA nets."""

    def loss(self, logits: Tensor, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimiser step."""

    def networks(self) -> list[nn.Module]:
        """The networks the objective runs besides the student (SD's teacher, BS's EMA):
        training puts them in the student's memory format, so a step pays no layout
        conversions and the EMA update keeps its fused path."""
        return []

    def precompute(self, forward_all: Callable[[nn.Module], Tensor]) -> None:
        """Cache what does not change during training; ``forward_all(net)`` is ``net`` on
        every training example's view, in order. Called only when the training views are
        deterministic (no augmentation); ``loss`` then gets the batch's indices ``idx``."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class CrossEntropy(Objective):
    """CE, methods §3.1."""

    def loss(self, logits: Tensor, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        return losses.cross_entropy(logits, y)


class LabelSmoothing(Objective):
    """LS, methods §3.2; ``loss_options`` (``spread``) go to :func:`losses.label_smoothing`."""

    def __init__(self, eps: float, **loss_options: Any) -> None:
        self.eps, self.loss_options = eps, loss_options

    def loss(self, logits: Tensor, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        return losses.label_smoothing(logits, y, self.eps, **self.loss_options)


class EntropyRegularization(Objective):
    """ER, methods §3.3."""

    def __init__(self, beta: float) -> None:
        self.beta = beta

    def loss(self, logits: Tensor, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        return losses.entropy_regularized(logits, y, self.beta)


class SelfDistillation(Objective):
    """SD against a frozen teacher that sees the student's augmented batch (methods §3.4).

    The teacher runs outside autocast (fp32 logits, so the soft targets q are fp32 under
    ``execution.precision: bf16`` too), per step or once in :meth:`precompute`.

    ``loss_options`` (alpha, temperature, student_temperature, t_squared) go to
    :func:`losses.self_distillation`, which holds their defaults.
    """

    def __init__(self, teacher: nn.Module, **loss_options: Any) -> None:
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.loss_options = loss_options
        self.table: Tensor | None = None

    def networks(self) -> list[nn.Module]:
        return [self.teacher]

    def loss(self, logits: Tensor, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        if self.table is not None and idx is not None:
            teacher_logits = self.table.index_select(0, idx)  # [n, K], same values
        else:
            with torch.inference_mode(), full_precision(x):
                teacher_logits = self.teacher(x)  # [n, K] fp32, BN running statistics
            teacher_logits = teacher_logits.clone()  # a normal tensor again
        return losses.self_distillation(logits, y, teacher_logits, **self.loss_options)

    @torch.no_grad()
    def precompute(self, forward_all: Callable[[nn.Module], Tensor]) -> None:
        """The frozen teacher in eval mode is a fixed function of its input, so without
        augmentation its logits on each training example are the same every epoch: one
        pass stores them (``table`` [n_train, K]) instead of a teacher forward per step."""
        self.teacher.eval()
        self.table = forward_all(self.teacher)


class BetaSmoothing(Objective):
    """BS with an EMA ranking network and a seeded Beta(a, 1) sampler (methods §3.5).

    Beta(a, 1) draws are U^(1/a) with U uniform on [0, 1) from ``generator`` (its CDF is
    x^a), so the sampler state is one ``torch.Generator`` that checkpoints exactly. The EMA
    network runs outside autocast: the ranking uses fp32 probabilities in every precision.
    ``ema_cap`` caps the EMA decay (an option of the objective only: its default is here);
    ``loss_options`` (alpha) go to :func:`losses.beta_smoothing`, which holds its default.
    """

    def __init__(self, ema_model: nn.Module, a: float, generator: torch.Generator,
                 ema_cap: float = 0.999, **loss_options: Any) -> None:
        self.ema = ema_model.train()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.a, self.generator, self.ema_cap = a, generator, ema_cap
        self.loss_options = loss_options
        self.step = 0

    def networks(self) -> list[nn.Module]:
        return [self.ema]

    def sample(self, n: int, device: torch.device) -> Tensor:
        u = torch.rand(n, generator=self.generator, dtype=torch.float64)
        return host_to_device(u.pow(1.0 / self.a).float(), device)  # [n] ~ Beta(a, 1)

    def loss(self, logits: Tensor, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        with torch.no_grad(), full_precision(x):
            ranking_logits = self.ema(x)  # [n, K] fp32, train mode: batch statistics
        b = self.sample(y.shape[0], logits.device)
        return losses.beta_smoothing(logits, y, ranking_logits, b, **self.loss_options)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        """θ_ema ← d·θ_ema + (1−d)·θ with d = min(1 − 1/(s+1), ema_cap); BN buffers untouched
        (methods §3.5)."""
        self.step += 1
        decay = min(1.0 - 1.0 / (self.step + 1), self.ema_cap)
        ema_params = list(self.ema.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema.state_dict(), "step": self.step,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        self.generator.set_state(state["generator"])


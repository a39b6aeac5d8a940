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

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from . import losses
from .augment import host_to_device

__all__ = ["BetaSmoothing", "ClassWiseKD", "CrossEntropy", "EntropyRegularization",
           "LabelSmoothing", "Objective", "OnlineLabelSmoothing", "ProgressiveSelfKD",
           "SelfDistillation", "TeacherFreeKD", "TeacherFreeSelfKD", "ZipfLabelSmoothing",
           "full_precision"]


def full_precision(x: Tensor) -> torch.autocast:
    """Autocast off on ``x``'s device: a frozen network's forward inside the student's bf16
    autocast region (``execution.precision: bf16``) gives fp32 logits, computed in fp32,
    rather than bf16 logits cast back. A no-op where autocast is off (fp32, tf32, the CPU)."""
    return torch.autocast(x.device.type, enabled=False)


class Objective:
    """Base: stateless loss of the student's logits. Subclasses add teachers or EMA nets.

    The training loop (:func:`selfdistill.train.fit`) calls, in this order: :meth:`bind`
    once before a resume file is read, then per epoch :meth:`start_epoch`, per step
    :meth:`student_logits`, :meth:`loss` and :meth:`after_step`, and :meth:`end_epoch`
    after a complete pass over the epoch's permutation (never after a pass SIGTERM cut short).
    """

    def bind(self, model: nn.Module, x: Tensor, y: Tensor,
             train_view: Callable[[Tensor], Tensor]) -> None:
        """The student, the whole training split (``x`` [N, ...], ``y`` [N] on the device)
        and its training view (augmentation, layout): for state sized by the training set
        (the PS-KD table, methods §3.8) or extra forwards of other examples (CS-KD's
        partners, methods §3.9). Called before the resume file is read."""

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Epoch ``epoch`` (0-based) of ``epochs`` starts or, after a resume, continues."""

    def end_epoch(self) -> None:
        """The epoch's last step is done (the OLS matrix update, methods §3.11)."""

    def student_logits(self, forward: Callable[[Tensor], Tensor], xb: Tensor) -> Tensor:
        """The student's logits [b, K] on the training view ``xb``: ``forward(xb)``."""
        return forward(xb)

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

    # the validation columns of history.csv (selfdistill.train.VALIDATION_COLUMNS); each only
    # reads held-out logits, so none changes training

    def frozen_teacher(self) -> nn.Module | None:
        """The frozen teacher whose agreement and KL the history records (SD, Tf-KD_self)."""
        return None

    def distill_temperature(self) -> float:
        """The temperature T of the teacher's soft targets (with :meth:`frozen_teacher`)."""
        raise NotImplementedError

    def held_out_loss(self, logits: Tensor, y: Tensor,
                      teacher_logits: Tensor | None) -> Tensor | None:
        """This objective's loss on held-out logits [n, K] with labels [n] (and the frozen
        teacher's eval-mode logits [n, K]), when it is a function of those alone; None for an
        objective whose loss needs training-time state or draws (BS's Beta draws, the PS-KD
        table, CS-KD's training-set partners, Zipf's feature map, OLS's matrix of the epoch
        just ended). Never changes the objective's state."""
        return None


class CrossEntropy(Objective):
    """CE, methods §3.1."""

    def loss(self, logits: Tensor, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        return losses.cross_entropy(logits, y)

    def held_out_loss(self, logits: Tensor, y: Tensor,
                      teacher_logits: Tensor | None) -> Tensor | None:
        return self.loss(logits, logits, y)


class LabelSmoothing(Objective):
    """LS, methods §3.2; ``loss_options`` (``spread``) go to :func:`losses.label_smoothing`."""

    def __init__(self, eps: float, **loss_options: Any) -> None:
        self.eps, self.loss_options = eps, loss_options

    def loss(self, logits: Tensor, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        return losses.label_smoothing(logits, y, self.eps, **self.loss_options)

    def held_out_loss(self, logits: Tensor, y: Tensor,
                      teacher_logits: Tensor | None) -> Tensor | None:
        return self.loss(logits, logits, y)


class EntropyRegularization(Objective):
    """ER, methods §3.3."""

    def __init__(self, beta: float) -> None:
        self.beta = beta

    def loss(self, logits: Tensor, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        return losses.entropy_regularized(logits, y, self.beta)

    def held_out_loss(self, logits: Tensor, y: Tensor,
                      teacher_logits: Tensor | None) -> Tensor | None:
        return self.loss(logits, logits, y)


class SelfDistillation(Objective):
    loss_fn = staticmethod(losses.self_distillation)

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
        return self.loss_fn(logits, y, teacher_logits, **self.loss_options)

    def frozen_teacher(self) -> nn.Module | None:
        return self.teacher

    def distill_temperature(self) -> float:
        """The ``temperature`` option, else the loss signature's default."""
        if "temperature" in self.loss_options:
            return float(self.loss_options["temperature"])
        return float(inspect.signature(self.loss_fn).parameters["temperature"].default)

    def held_out_loss(self, logits: Tensor, y: Tensor,
                      teacher_logits: Tensor | None) -> Tensor | None:
        assert teacher_logits is not None  # fit passes frozen_teacher()'s logits
        return self.loss_fn(logits, y, teacher_logits, **self.loss_options)

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



# --------------------------------------------------------------------------- teacher-free


class TeacherFreeSelfKD(SelfDistillation):
    """Tf-KD_self (methods §3.7): SD's frozen eval-mode teacher on the same augmented batch
    (the seed's CE network, generation 0), with :func:`losses.tfkd_self` as the loss."""

    loss_fn = staticmethod(losses.tfkd_self)


class TeacherFreeKD(Objective):
    """Tf-KD_reg (methods §3.6): the hand-made virtual teacher; no state."""

    def __init__(self, **loss_options: Any) -> None:
        self.loss_options = loss_options

    def loss(self, logits: Tensor, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        return losses.tfkd_reg(logits, y, **self.loss_options)

    def held_out_loss(self, logits: Tensor, y: Tensor,
                      teacher_logits: Tensor | None) -> Tensor | None:
        return self.loss(logits, logits, y)


class ProgressiveSelfKD(Objective):
    """PS-KD (methods §3.8): targets mix the label with the network's own prediction of the
    previous epoch, α_t = α_T·(t+1)/E for the 0-based epoch t of E.

    ``table`` [N, K] float32 holds, per training example, the softmax (T = 1) of its last
    train-mode forward: one-hot rows before the first epoch (so epoch 0's target is the label),
    each batch's rows overwritten after its loss with that step's detached prediction, before
    the optimiser step (as the authors' code). The table is resume state.
    """

    def __init__(self, num_classes: int, alpha_T: float = 0.8) -> None:
        self.k, self.alpha_T = num_classes, alpha_T
        self.alpha_t = 0.0
        self.table: Tensor | None = None

    def bind(self, model: nn.Module, x: Tensor, y: Tensor,
             train_view: Callable[[Tensor], Tensor]) -> None:
        self.table = torch.zeros(y.shape[0], self.k, dtype=torch.float32, device=y.device)
        self.table.scatter_(1, y.view(-1, 1), 1.0)  # [N, K] one-hot

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.alpha_t = losses.pskd_alpha(epoch, epochs, self.alpha_T)

    def loss(self, logits: Tensor, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        if self.table is None or idx is None:
            raise RuntimeError("PS-KD needs bind() and the batch's example indices")
        prev = self.table.index_select(0, idx)  # [b, K], last epoch's predictions
        out = losses.pskd(logits, y, prev, self.alpha_t)
        self.table.index_copy_(0, idx, torch.softmax(logits.detach().float(), dim=1))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"table": self.table}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.table is not None
        self.table.copy_(state["table"])


class ClassWiseKD(Objective):
    """CS-KD (methods §3.9): each anchor of the batch gets one partner of its class, drawn
    uniformly with replacement (possibly itself) by the seeded ``partner_generator``; the
    partners' training views go through a separate train-mode forward without gradient
    (their own BatchNorm batch statistics, running statistics updated as by any train-mode
    forward), and CE is on the anchors only. The generator is resume state."""

    def __init__(self, partner_generator: torch.Generator, num_classes: int,
                 **loss_options: Any) -> None:
        self.generator, self.k = partner_generator, num_classes
        self.loss_options = loss_options
        self.model: nn.Module | None = None

    def bind(self, model: nn.Module, x: Tensor, y: Tensor,
             train_view: Callable[[Tensor], Tensor]) -> None:
        self.model, self.x, self.view = model, x, train_view
        self.order = torch.argsort(y, stable=True)  # [N] example indices grouped by class
        counts = torch.nn.functional.one_hot(y, self.k).sum(0)  # [K] (no data-sized output)
        self.counts = counts
        self.starts = torch.cumsum(counts, 0) - counts  # [K] first position of each class

    def partners(self, y: Tensor) -> Tensor:
        """One same-class partner index per anchor label in ``y`` [b]: [b] on y's device."""
        u = host_to_device(torch.rand(y.shape[0], generator=self.generator,
                                      dtype=torch.float64), y.device)  # [b] in [0, 1)
        count = self.counts.index_select(0, y)
        pos = self.starts.index_select(0, y) + (u * count).long().clamp_max(count - 1)
        return self.order.index_select(0, pos)

    def loss(self, logits: Tensor, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        if self.model is None:
            raise RuntimeError("CS-KD needs bind() before its first step")
        xp = self.view(self.x.index_select(0, self.partners(y)))  # [b, ...] partner views
        with torch.no_grad():  # the student itself: same precision as its own forward
            partner_logits = self.model(xp).float()  # [b, K], train mode
        return losses.cskd(logits, y, partner_logits, **self.loss_options)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class ZipfLabelSmoothing(Objective):
    """Zipf's LS (methods §3.10): the student's own classifier votes at every position of its
    last feature map (:func:`selfdistill.models.dense_logits`) from the same forward as the
    logits; the votes' ranks give the non-target target. Runs the network's eager
    ``features``/``head`` (not a ``torch.compile`` wrapper). No state across steps."""

    def __init__(self, **loss_options: Any) -> None:
        self.loss_options = loss_options
        self.model: nn.Module | None = None
        self.fmap: Tensor | None = None

    def bind(self, model: nn.Module, x: Tensor, y: Tensor,
             train_view: Callable[[Tensor], Tensor]) -> None:
        from .models import dense_logits

        self.model, self.dense = model, dense_logits

    def student_logits(self, forward: Callable[[Tensor], Tensor], xb: Tensor) -> Tensor:
        if self.model is None:
            raise RuntimeError("Zipf's LS needs bind() before its first step")
        self.fmap = self.model.features(xb)  # type: ignore[operator]
        return self.model.head(self.fmap)  # type: ignore[operator]

    def loss(self, logits: Tensor, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        assert self.model is not None and self.fmap is not None
        with torch.no_grad():
            dense = self.dense(self.model, self.fmap.detach()).float()  # [b, K, P]
        self.fmap = None
        return losses.zipf(logits, y, dense, **self.loss_options)


class OnlineLabelSmoothing(Objective):
    """OLS (methods §3.11): the soft-label matrix ``S`` [K, K] of the previous epoch; over
    each epoch the softmax of every correctly classified training example (its loss's own
    train-mode forward) is summed into row y, and at the epoch's end ``S[c]`` = sum/count, a
    uniform 1/K row for a class without a correct example. ``S`` starts at zero (epoch 0
    trains on (1-α)·CE). The sums are matrix products (one-hot^T · probabilities), which are
    deterministic and need no host synchronisation. ``S``, sums and counts are resume state."""

    def __init__(self, num_classes: int, **loss_options: Any) -> None:
        self.k = num_classes
        self.loss_options = loss_options
        self.matrix = torch.zeros(num_classes, num_classes)
        self.sums = torch.zeros(num_classes, num_classes)
        self.counts = torch.zeros(num_classes)

    def bind(self, model: nn.Module, x: Tensor, y: Tensor,
             train_view: Callable[[Tensor], Tensor]) -> None:
        self.matrix, self.sums, self.counts = (t.to(y.device) for t in
                                               (self.matrix, self.sums, self.counts))

    def loss(self, logits: Tensor, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        out = losses.ols(logits, y, self.matrix, **self.loss_options)
        with torch.no_grad():
            probs = torch.softmax(logits.detach().float(), dim=1)  # [b, K]
            correct = (probs.argmax(1) == y).float().unsqueeze(1)  # [b, 1]
            onehot_t = torch.nn.functional.one_hot(y, self.k).float().t()  # [K, b]
            self.sums += onehot_t @ (probs * correct)
            self.counts += (onehot_t @ correct).squeeze(1)
        return out

    def end_epoch(self) -> None:
        uniform = torch.full_like(self.matrix, 1.0 / self.k)
        seen = (self.counts > 0).unsqueeze(1)  # [K, 1]
        self.matrix = torch.where(seen, self.sums / self.counts.clamp_min(1).unsqueeze(1),
                                  uniform)
        self.sums = torch.zeros_like(self.sums)
        self.counts = torch.zeros_like(self.counts)

    def state_dict(self) -> dict[str, Any]:
        return {"matrix": self.matrix, "sums": self.sums, "counts": self.counts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("matrix", "sums", "counts"):
            getattr(self, key).copy_(state[key])


"""The method registry: every fact about a training method (SPEC §3), in one place.

``METHODS`` maps a method's name (config block key, path segment, ``method`` column of
``metrics.csv``, SPEC §7) to its :class:`Method`: display label, objective class, loss
function, the constructor keyword the grid sweeps and its symbol, and its SPEC section.
Everything else is derived from an entry, never written out again:

- ``sweep_key`` (``ls_eps``, ``er_beta``, ``bs_a``): the ``sweeps:``/``compare:`` config keys;
- ``options()``: the method's config options and their defaults, read from the signatures
  of its loss (SPEC §7) and objective constructor, so each default exists once, in code.

A method's config block holds exactly those keyword arguments (as in torchdistill's
``{key: 'KDLoss', kwargs: {...}}``): ``methods: {sd: {alpha: 0.4, temperature: 4.0}}``.

The objective class and loss function are resolved on first use: this module is imported
by the DAG build, the measure jobs and the tables, which never import torch.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .objectives import Objective

__all__ = ["METHODS", "SWEPT", "Method", "get_method"]


@dataclass(frozen=True)
class Method:
    """One training method of SPEC §3 and where its code lives."""

    name: str  # "sd": config block key, path segment, metrics.csv `method` (SPEC §7)
    label: str  # "SD": tables and figures
    objective_name: str  # its class in selfdistill.objectives
    loss_name: str  # its function in selfdistill.losses (SPEC §7)
    swept: str | None  # the constructor keyword the grid sweeps ("eps"); None: not swept
    symbol: str | None  # that strength's symbol in labels ("ε")
    section: str  # its SPEC section ("3.4")

    @property
    def objective(self) -> type[Objective]:
        """The objective class (imports torch on first use)."""
        return getattr(importlib.import_module("selfdistill.objectives"), self.objective_name)

    @property
    def loss(self) -> Callable[..., Any]:
        """The loss function of ``selfdistill.losses`` (imports torch on first use)."""
        return getattr(importlib.import_module("selfdistill.losses"), self.loss_name)

    @property
    def sweep_key(self) -> str | None:
        """Config key of the swept strength under ``sweeps:`` and ``compare:`` (``ls_eps``)."""
        return None if self.swept is None else f"{self.name}_{self.swept}"

    def options(self) -> dict[str, Any]:
        """Config options -> defaults: the keyword parameters with a default of the loss,
        then those only the objective constructor has (BS's ``ema_cap``), swept one excluded."""
        found: dict[str, Any] = {}
        for fn in (self.loss, self.objective):
            for p in inspect.signature(fn).parameters.values():
                if p.default is not p.empty and p.name != self.swept:
                    found.setdefault(p.name, p.default)
        return found

    def requires(self) -> tuple[str, ...]:
        """Constructor arguments that are run state, not config (SD's ``teacher``, BS's
        ``ema_model`` and ``generator``): no default, not swept, not ``**options``."""
        return tuple(p.name for p in inspect.signature(self.objective).parameters.values()
                     if p.default is p.empty and p.name != self.swept
                     and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))

    def resolve(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """The block ``methods.<name>`` with every option's default filled in; unknown keys
        raise ValueError naming the key and the accepted ones."""
        defaults = self.options()
        unknown = sorted(set(given or {}) - set(defaults))
        if unknown:
            raise ValueError(f"methods.{self.name}: unknown option(s) {unknown}; {self.name} "
                             f"(SPEC §{self.section}) accepts {sorted(defaults) or 'none'}. "
                             f"Remove or correct them.")
        return {**defaults, **(given or {})}

    def build(self, param: float | None, options: Mapping[str, Any], **state: Any) -> Objective:
        """The objective: run ``state`` (see :meth:`requires`), the swept strength ``param``
        as its keyword, and the resolved ``options`` as keyword arguments."""
        if self.swept is not None and param is None:
            raise ValueError(f"method {self.name} needs its strength {self.swept} "
                             f"({self.symbol}, SPEC §{self.section}) as param")
        swept = {} if self.swept is None else {self.swept: float(param)}  # type: ignore[arg-type]
        return self.objective(**state, **swept, **self.resolve(options))


METHODS: dict[str, Method] = {
    m.name: m for m in (
        Method("ce", "CE", "CrossEntropy", "cross_entropy", None, None, "3.1"),
        Method("ls", "LS", "LabelSmoothing", "label_smoothing", "eps", "ε", "3.2"),
        Method("er", "ER", "EntropyRegularization", "entropy_regularized", "beta", "β", "3.3"),
        Method("sd", "SD", "SelfDistillation", "self_distillation", None, None, "3.4"),
        Method("bs", "BS", "BetaSmoothing", "beta_smoothing", "a", "a", "3.5"),
    )
}

SWEPT: tuple[Method, ...] = tuple(m for m in METHODS.values() if m.swept is not None)
"""The methods the grid sweeps over a strength, in registry order (LS, ER, BS)."""


def get_method(name: str) -> Method:
    """The registry entry of ``name``; an unknown name raises KeyError listing the known."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"method {name!r} is unknown; known methods: {', '.join(METHODS)} "
                       f"(selfdistill.methods.METHODS)") from None

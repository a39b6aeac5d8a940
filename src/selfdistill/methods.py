"""The method registry: every fact about a training method (methods §3), in one place.

``METHODS`` maps a method's name (config block key, path segment, ``method`` column of
``metrics.csv``, methods §7) to its :class:`Method`: display label, objective class, loss
function, the constructor keyword the grid sweeps and its symbol, and its methods section.
Everything else is derived from an entry, never written out again:

- ``sweep_key`` (``ls_eps``, ``er_beta``, ``bs_a``): the ``sweeps:``/``compare:`` config keys;
- ``options()``: the method's config options and their defaults, read from the signatures
  of its loss (methods §7) and objective constructor, so each default exists once, in code.

A method's config block holds exactly those keyword arguments (as in torchdistill's
``{key: 'KDLoss', kwargs: {...}}``): ``methods: {sd: {alpha: 0.4, temperature: 4.0}}``.

The objective class and loss function are resolved on first use: this module is imported
by the DAG build, the measure jobs and the tables, which never import torch.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .objectives import Objective

__all__ = ["METHODS", "PAPER_METHODS", "SWEPT", "Method", "NanRisk", "Range", "get_method"]


@dataclass(frozen=True)
class Range:
    """The values a method keyword accepts: an interval (``low``/``high`` inclusive unless
    ``low_open``/``high_open``; None: unbounded) or, for a text option, ``choices``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()

    def __contains__(self, value: object) -> bool:
        if self.choices:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        """``[0, 1)``, ``>= 0``, ``> 0``, ``one of others, uniform``."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.high is None:
            op = ">" if self.low_open else ">="
            return "any number" if self.low is None else f"{op} {self.low:g}"
        lo = "(-inf" if self.low is None else f"{'(' if self.low_open else '['}{self.low:g}"
        return f"{lo}, {self.high:g}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class NanRisk:
    """A method keyword whose values outside ``usual`` can make the training loss
    non-finite, and ``why`` (for the message of :class:`selfdistill.train.NonFiniteLossError`)."""

    usual: Range
    why: str


@dataclass(frozen=True)
class Method:
    """One training method of methods §3 and where its code lives."""

    name: str  # "sd": config block key, path segment, metrics.csv `method` (methods §7)
    label: str  # "SD": tables and figures
    objective_name: str  # its class in selfdistill.objectives
    loss_name: str  # its function in selfdistill.losses (methods §7)
    swept: str | None  # the constructor keyword the grid sweeps ("eps"); None: not swept
    symbol: str | None  # that strength's symbol in labels ("ε")
    section: str  # its methods section ("3.4")
    # allowed values of the swept strength and of the options (keyword -> Range)
    ranges: Mapping[str, Range] = field(default_factory=dict, hash=False)
    # keywords that can make the loss non-finite (keyword -> NanRisk), and a cause that
    # belongs to no keyword (SD: the teacher's logits)
    nan_risks: Mapping[str, NanRisk] = field(default_factory=dict, hash=False)
    nan_note: str = ""
    # a non-SD method with a teacher: the method of the seed's run whose model.pt it reads
    # (Tf-KD_self: "ce", the seed's generation 0, as SD generation 1's teacher)
    teacher: str | None = None
    # how it is drawn in every figure (seaborn "colorblind" palette entries) and the extra
    # forward passes per training image besides the student's (selfdistill.cost)
    color: str = "#555555"
    marker: str = "o"
    extra_forwards: int = 0

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

    def schema_block(self, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON schema of the block ``methods.<name>``, derived from ``defaults`` (the
        options and their defaults; None: :meth:`options`, which imports torch) and
        ``ranges``: each option typed by its default (boolean, string with its choices, or
        number within its Range). No defaults (the code holds them) and unknown keys allowed
        here: :meth:`resolve` names them with the accepted ones. The workflow checks configs
        with it; the CLI builds its ``--<name>-<option>`` flags from it, passing the
        torch-free read of the defaults (selfdistill.cli.method_options)."""
        props: dict[str, Any] = {}
        for option, default in (self.options() if defaults is None else defaults).items():
            allowed = self.ranges.get(option, Range())
            if isinstance(default, bool):
                spec: dict[str, Any] = {"type": "boolean"}
            elif isinstance(default, str) or allowed.choices:
                spec = {"type": "string", **({"enum": list(allowed.choices)}
                                             if allowed.choices else {})}
            else:
                spec = {"type": "number"}
                if allowed.low is not None:
                    spec["exclusiveMinimum" if allowed.low_open else "minimum"] = allowed.low
                if allowed.high is not None:
                    spec["exclusiveMaximum" if allowed.high_open else "maximum"] = allowed.high
            # the bounds and choices are the keywords above, not repeated in words (the
            # CLI's help and the workflow's messages spell them out from those)
            props[option] = {**spec, "description": f"{self.label} {option} "
                                                    f"(methods §{self.section})"}
        return {"type": ["object", "null"], "description": f"methods §{self.section}",
                "properties": props}

    def resolve(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """The block ``methods.<name>`` with every option's default filled in; unknown keys
        raise ValueError naming the key and the accepted ones."""
        defaults = self.options()
        unknown = sorted(set(given or {}) - set(defaults))
        if unknown:
            raise ValueError(f"methods.{self.name}: unknown option(s) {unknown}; {self.name} "
                             f"(methods §{self.section}) accepts {sorted(defaults) or 'none'}. "
                             f"Remove or correct them.")
        return {**defaults, **(given or {})}

    def nan_causes(self, param: float | None, options: Mapping[str, Any]) -> list[str]:
        """Likely causes of a non-finite loss among this method's settings: each keyword of
        ``nan_risks`` whose value (``param`` for the swept one, else the resolved
        ``options``) is outside its usual range, then ``nan_note``."""
        values = {**self.resolve(options), **({} if self.swept is None else {self.swept: param})}
        causes = []
        for key, risk in self.nan_risks.items():
            value = values.get(key)
            if value is not None and value not in risk.usual:
                where = (f"{self.sweep_key} (this run's param)" if key == self.swept
                         else f"methods.{self.name}.{key}")
                shown = f"{value:g}" if isinstance(value, (int, float)) else repr(value)
                causes.append(f"{where} = {shown}, outside the usual {risk.usual}: {risk.why}")
        return causes + ([self.nan_note] if self.nan_note else [])

    def build(self, param: float | None, options: Mapping[str, Any], **state: Any) -> Objective:
        """The objective: run ``state`` (see :meth:`requires`), the swept strength ``param``
        as its keyword, and the resolved ``options`` as keyword arguments."""
        if self.swept is not None and param is None:
            raise ValueError(f"method {self.name} needs its strength {self.swept} "
                             f"({self.symbol}, methods §{self.section}) as param")
        swept = {} if self.swept is None else {self.swept: float(param)}  # type: ignore[arg-type]
        return self.objective(**state, **swept, **self.resolve(options))


_WEIGHT_RISK = NanRisk(Range(0, 1), "outside [0, 1] one term of the loss gets a negative "
                      "weight: unbounded below")

METHODS: dict[str, Method] = {
    m.name: m for m in (
        Method("ce", "CE", "CrossEntropy", "cross_entropy", None, None, "3.1", color="#555555", marker="o"),
        Method("ls", "LS", "LabelSmoothing", "label_smoothing", "eps", "ε", "3.2",
               ranges={"eps": Range(0, 1, high_open=True),  # 1-ε on y stays positive
                       "spread": Range(choices=("others", "uniform"))},
               nan_risks={"eps": NanRisk(Range(0, 0.99), "the target puts 1-ε on the label, so "
                                         "near 1 the label is all but ignored")}, color="#0173B2", marker="s"),
        Method("er", "ER", "EntropyRegularization", "entropy_regularized", "beta", "β", "3.3",
               ranges={"beta": Range(0)},  # β < 0 would reward confidence
               nan_risks={"beta": NanRisk(Range(0, 1), "CE - β·H(p): a large β outweighs the "
                                          "label and scales the gradients by β")}, color="#DE8F05", marker="^"),
        Method("sd", "SD", "SelfDistillation", "self_distillation", None, None, "3.4",
               ranges={"alpha": Range(0, 1), "temperature": Range(0, low_open=True)},
               nan_risks={"temperature": NanRisk(Range(1e-3), "q = softmax(z/T) divides the "
                                                 "teacher's logits z by T, and z/T overflows "
                                                 "float32 (max 3.4e38) for a tiny T"),
                          "alpha": NanRisk(Range(0, 1), "outside [0, 1] one term of the loss "
                                           "gets a negative weight: unbounded below")},
               nan_note="non-finite teacher logits (its weights are checked finite when "
                        "loaded; an overflow inside the teacher on these inputs remains)", color="#029E73", marker="D", extra_forwards=1),
        Method("bs", "BS", "BetaSmoothing", "beta_smoothing", "a", "a", "3.5",
               ranges={"a": Range(0, low_open=True),  # Beta(a, 1) needs a > 0
                       "alpha": Range(0, 1),
                       "ema_cap": Range(0, 1, low_open=True, high_open=True)},
               nan_risks={"a": NanRisk(Range(1e-3), "the Beta(a, 1) draws are U^(1/a): a <= 0 "
                                       "gives label weights above 1 (loss unbounded below)"),
                          "alpha": NanRisk(Range(0, 1), "outside [0, 1] one term of the loss "
                                           "gets a negative weight: unbounded below")}, color="#CC78BC", marker="v", extra_forwards=1),
        # the teacher-free family (methods §3.6-3.11): run only where an experiment lists them
        Method("tfkd_reg", "Tf-KD(reg)", "TeacherFreeKD", "tfkd_reg", None, None, "3.6",
               ranges={"a": Range(0, 1), "temperature": Range(0, low_open=True),
                       "alpha": Range(0, 1), "multiplier": Range(0),
                       "form": Range(choices=("code", "paper"))},
               nan_risks={"alpha": _WEIGHT_RISK}, color="#D55E00", marker="P"),
        Method("tfkd_self", "Tf-KD(self)", "TeacherFreeSelfKD", "tfkd_self", None, None,
               "3.7", ranges={"alpha": Range(0, 1), "temperature": Range(0, low_open=True),
                              "multiplier": Range(0)},
               nan_risks={"alpha": _WEIGHT_RISK,
                          "temperature": NanRisk(Range(1e-3), "the teacher's and the student's "
                                                 "logits are divided by T, which overflows "
                                                 "float32 for a tiny T")},
               nan_note="non-finite teacher logits", teacher="ce", color="#56B4E9", marker="X", extra_forwards=1),
        Method("pskd", "PS-KD", "ProgressiveSelfKD", "pskd", None, None, "3.8",
               ranges={"alpha_T": Range(0, 1)},
               nan_risks={"alpha_T": NanRisk(Range(0, 1), "outside [0, 1] the target gets a "
                                             "negative weight: unbounded below")}, color="#CA9161", marker="h"),
        Method("cskd", "CS-KD", "ClassWiseKD", "cskd", None, None, "3.9",
               ranges={"temperature": Range(0, low_open=True), "lam": Range(0)},
               nan_risks={"temperature": NanRisk(Range(1e-3), "both softmaxes divide logits by "
                                                 "T, which overflows float32 for a tiny T")}, color="#000000", marker="*", extra_forwards=1),
        Method("zipf", "Zipf-LS", "ZipfLabelSmoothing", "zipf", None, None, "3.10",
               ranges={"lam": Range(0), "power": Range(0)}, color="#999933", marker="<"),
        Method("ols", "OLS", "OnlineLabelSmoothing", "ols", None, None, "3.11",
               ranges={"alpha": Range(0, 1)}, nan_risks={"alpha": _WEIGHT_RISK}, color="#882255", marker=">"),
    )
}

PAPER_METHODS: tuple[str, ...] = ("ce", "sd", "ls", "er", "bs")
"""The methods an experiment runs when it lists none: the paper's five (methods §5)."""

SWEPT: tuple[Method, ...] = tuple(m for m in METHODS.values() if m.swept is not None)
"""The methods the grid sweeps over a strength, in registry order (LS, ER, BS)."""


def get_method(name: str) -> Method:
    """The registry entry of ``name``; an unknown name raises KeyError listing the known."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"method {name!r} is unknown; known methods: {', '.join(METHODS)} "
                       f"(selfdistill.methods.METHODS)") from None

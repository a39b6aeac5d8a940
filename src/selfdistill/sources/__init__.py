"""Data sources (methods §5): the ``SOURCES`` registry and the dataset-block check.

One module per source (:mod:`.mnist1d`, :mod:`.sklearn_digits`, :mod:`.cifar`,
:mod:`.tiny_imagenet`, :mod:`.cub200`, :mod:`.fashion_mnist`); each registers a
:class:`~.keys.Source`: its preparer, whether it needs downloaded archives, the keys its
dataset block accepts (type, bounds, default) and its training-pool size. The sources
write the prepared format of :mod:`selfdistill.prepared` (below them) and never import
:mod:`selfdistill.data`, the dispatcher above them. Importing this package loads neither
torch nor PIL, so the workflow can check the config at parse time with
:func:`validate_dataset`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .cifar import CIFAR10, CIFAR100
from .cub200 import CUB200
from .fashion_mnist import FASHION_MNIST
from .keys import Key, Source, close_match
from .mnist1d import MNIST1D
from .sklearn_digits import SKLEARN_DIGITS
from .tiny_imagenet import TINY_IMAGENET

__all__ = ["SOURCES", "Key", "Source", "get_source", "resolve", "validate_dataset"]

SOURCES: dict[str, Source] = {s.name: s for s in (
    MNIST1D, SKLEARN_DIGITS, CIFAR10, CIFAR100, TINY_IMAGENET, CUB200, FASHION_MNIST)}


def get_source(name: str, params: Mapping[str, Any]) -> Source:
    """The registered source of dataset block ``datasets.<name>``; ValueError naming the
    block, the known sources and the closest one otherwise."""
    if not isinstance(params, Mapping):
        raise ValueError(f"datasets.{name}: expected a mapping of keys (source, val_size, "
                         f"...), got {type(params).__name__}; write the block as key: value "
                         f"lines")
    known = ", ".join(sorted(SOURCES))
    if "source" not in params:
        raise ValueError(f"datasets.{name}.source: missing; add source: one of {known}")
    source = params["source"]
    if source not in SOURCES:
        raise ValueError(f"datasets.{name}.source: unknown source {source!r}"
                         f"{close_match(str(source), sorted(SOURCES))}; known: {known}")
    return SOURCES[source]


def resolve(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Dataset block ``datasets.<name>`` checked, in its types, defaults filled in."""
    return get_source(name, params).resolve(name, params)


def validate_dataset(name: str, params: Mapping[str, Any]) -> None:
    """Check dataset block ``datasets.<name>`` before any job runs (methods §2, §5): unknown
    keys (with the closest known key), wrong types, out-of-range values, and a validation
    hold-out that does not fit the source's training pool. ValueError listing every
    problem, each as ``datasets.<name>.<key>``: what is wrong; the fix."""
    resolve(name, params)

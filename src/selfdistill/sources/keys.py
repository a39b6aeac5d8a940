"""The keys a dataset block may hold, and the checks that run before any job (methods §2, §5).

Each source declares its keys as :class:`Key` values (type, bounds, default) and the
number of training examples it gives for a block (:attr:`Source.train_pool`, computed
from the block alone, without generating or reading any data), so a block is checked
whole: unknown keys (with a close-match suggestion), wrong types, out-of-range values and
a validation hold-out that does not fit. Every message names ``datasets.<name>.<key>``,
what is wrong and the fix. Light to import: the workflow checks the config at parse time.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import download

__all__ = ["COMMON", "DOWNLOADED", "IMAGES", "REQUIRED", "Invalid", "Key", "Source", "augment_key",
           "close_match", "resize_check", "resized_image_source", "source_key"]

REQUIRED: Any = object()  # default of a key the block must give
# A number as YAML may load it as a string: PyYAML reads ``1e6`` and ``1.0e6`` (no sign in
# the exponent) as strings, so these are accepted where a number is expected.
_NUMBER = re.compile(r"[-+]?(\d[\d_]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


class Invalid(ValueError):
    """One key's value is wrong: ``what`` is wrong with it, ``fix`` says what to write."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what}; {fix}")
        self.what, self.fix = what, fix


@dataclass(frozen=True)
class Key:
    """One dataset-block key. ``kind``: ``int``, ``float``, ``bool``, ``choice``, ``text``
    (a path or URL) or ``hash`` (a hex digest of ``digits`` digits, or ``{file: digest}``).
    Numeric bounds are inclusive unless ``open_low``/``open_high``; ``nullable`` accepts null
    (meaning: the default behaviour)."""

    kind: str
    doc: str
    default: Any = REQUIRED
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()
    digits: int = 0
    nullable: bool = False
    example: Any = None

    def expected(self) -> str:
        """What this key takes, in words (for error messages)."""
        if self.kind in ("int", "float"):
            what = "a whole number" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None:
                lo, hi = "(" if self.open_low else "[", ")" if self.open_high else "]"
                what += f" in {lo}{_num(self.low)}, {_num(self.high)}{hi}"
            elif self.low is not None:
                what += f" {'>' if self.open_low else '>='} {_num(self.low)}"
        else:
            what = {"bool": "true or false", "choice": f"one of {', '.join(self.choices)}",
                    "text": "a path or URL string",
                    "hash": f"a {self.digits}-hex-digit digest or a mapping {{file name: digest}}"
                    }[self.kind]
        return what + (" or null" if self.nullable else "")

    def check(self, value: Any, files: tuple[str, ...] = ()) -> Any:
        """``value`` in its proper type (``1e6`` -> 1000000), or :class:`Invalid`.
        ``files``: the archive names a ``hash`` mapping may name."""
        if value is None and self.nullable:
            return None
        got = f"got {value!r} ({type(value).__name__})"
        if self.kind in ("int", "float"):
            return self._check_number(value, got)
        if self.kind == "bool" and isinstance(value, bool):
            return value
        if self.kind == "choice" and value in self.choices:
            return value
        if self.kind == "text" and isinstance(value, str) and value:
            return value
        if self.kind == "hash":
            return self._check_hash(value, got, files)
        raise Invalid(f"expected {self.expected()}, {got}", self._fix())

    def _check_number(self, value: Any, got: str) -> int | float:
        number = _as_number(value)
        if number is None or (self.kind == "int" and not float(number).is_integer()):
            raise Invalid(f"expected {self.expected()}, {got}", self._fix())
        number = int(number) if self.kind == "int" else float(number)
        below = self.low is not None and (number <= self.low if self.open_low else number < self.low)
        above = self.high is not None and (number >= self.high if self.open_high
                                           else number > self.high)
        if below or above:
            raise Invalid(f"{value!r} is out of range: it must be {self.expected()}", self._fix())
        return number

    def _check_hash(self, value: Any, got: str, files: tuple[str, ...]) -> Any:
        if isinstance(value, Mapping):
            unknown = sorted(str(f) for f in value if f not in files)
            if unknown:
                raise Invalid(f"names {unknown}, which are not archives of this source",
                              f"use the file names {list(files)}")
            for f, digest in value.items():
                self._digest(digest, f"{f}: {digest!r}")
            return dict(value)
        if len(files) > 1:
            raise Invalid(f"one digest cannot check the {len(files)} archives of this source",
                          f"write a mapping {{file name: digest}} for {list(files)}")
        return self._digest(value, got)

    def _digest(self, value: Any, got: str) -> str:
        if isinstance(value, str) and re.fullmatch(f"[0-9a-fA-F]{{{self.digits}}}", value):
            return value
        raise Invalid(f"expected {self.expected()}, {got}", self._fix())

    def _fix(self) -> str:
        example = self.example if self.example is not None else self.default
        hint = f", e.g. {example!r}" if example not in (None, REQUIRED) else ""
        return f"write {self.expected()}{hint} ({self.doc})"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _as_number(value: Any) -> int | float | None:
    """An int/float (not bool), or a numeric string such as YAML's ``1e6``; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value.strip().replace("_", ""))
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    return None


def close_match(word: str, known: list[str] | tuple[str, ...]) -> str:
    """`` (did you mean X?)`` for the closest of ``known``, or an empty string."""
    match = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


# A cross-key check: (key, problem and fix) for the block's typed values, or None.
Check = Callable[[Mapping[str, Any]], "tuple[str, str] | None"]


@dataclass(frozen=True)
class Source:
    """A registered data source: its preparer, whether it needs downloaded archives, the
    keys its dataset block accepts, and its training-pool size for a block (methods §2: the
    validation hold-out is taken from that pool, so ``val_size`` must be smaller)."""

    name: str
    prepare: Callable[..., dict[str, Any]]
    downloads: bool
    keys: Mapping[str, Key]
    train_pool: Callable[[Mapping[str, Any]], int]
    pool_keys: tuple[str, ...] = ()  # the keys the pool size depends on (for messages)
    checks: tuple[Check, ...] = ()
    files: tuple[str, ...] = ()  # archive names (for ``{file: digest}`` mappings)
    spatial_dims: int = 2  # inputs it gives: 1 signals [C, L], 2 images [C, H, W]

    def resolve(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The block's values in their types, defaults filled in; ValueError listing every
        problem (``datasets.<name>.<key>``: what is wrong; the fix)."""
        problems, values = self._key_problems(name, params)
        if not problems:
            problems = [f"datasets.{name}.{key}: {msg}"
                        for key, msg in self._cross_problems(values)]
        if problems:
            raise ValueError("invalid dataset block:\n  " + "\n  ".join(problems))
        return values

    def _key_problems(self, name: str,
                      params: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
        problems, values = [], {}
        for key in params:
            if key not in self.keys:
                problems.append(f"datasets.{name}.{key}: unknown key for source {self.name}"
                                f"{close_match(str(key), sorted(self.keys))}; remove it or "
                                f"use one of {', '.join(sorted(self.keys))}")
        for key, spec in self.keys.items():
            if key not in params and spec.default is REQUIRED:
                problems.append(f"datasets.{name}.{key}: missing; add {key}: "
                                f"{spec.expected()} ({spec.doc})")
                continue
            try:
                values[key] = spec.check(params[key], self.files) if key in params else spec.default
            except Invalid as err:
                problems.append(f"datasets.{name}.{key}: {err.what}; {err.fix}")
        return problems, values

    def _cross_problems(self, values: Mapping[str, Any]) -> list[tuple[str, str]]:
        found = [check(values) for check in (self._holdout_fits, *self.checks)]
        return [f for f in found if f is not None]

    def _holdout_fits(self, values: Mapping[str, Any]) -> tuple[str, str] | None:
        """methods §2: the validation hold-out comes from the training pool and leaves some."""
        pool = self.train_pool(values)
        if values["val_size"] < pool:
            return None
        given = ", ".join(f"{k}={values[k]}" for k in self.pool_keys) or "its fixed size"
        fix = (f"choose val_size between 1 and {pool - 1}" if pool > 1 else
               f"enlarge the training pool ({', '.join(self.pool_keys)})")
        return ("val_size", f"{values['val_size']} is not smaller than the {pool} training "
                f"examples source {self.name} gives ({given}), from which the validation "
                f"hold-out is taken (methods §2): {fix}")


# ------------------------------------------------------------------ keys shared by sources

AUGMENT_DOC = "methods §2 training augmentation"
COMMON: dict[str, Key] = {
    "val_size": Key("int", "methods §2 validation hold-out from the training pool", low=1,
                    example=1000),
    "split_seed": Key("int", "seed of the methods §2 hold-out", low=0, example=0),
    "augment_padding": Key("int", "methods §2 crop padding in pixels", default=4, low=0,
                           high=64),
}
DOWNLOADED: dict[str, Key] = {
    "mirror": Key("text", "base URL or local directory holding the archives", default=None,
                  nullable=True),
    "sha256": Key("hash", "expected sha256 replacing the pinned value", default=None,
                  digits=64, nullable=True),
    "md5": Key("hash", "expected md5 replacing the pinned value", default=None, digits=32,
               nullable=True),
}
IMAGES: dict[str, Key] = {
    "input_size": Key("int", "network input size for augment resized_crop_flip, methods §2; "
                      "default: the stored size", default=None, low=8, high=256, nullable=True,
                      example=32),
}


def source_key(name: str) -> Key:
    """The ``source`` key: the registry name itself."""
    return Key("choice", "the data source", choices=(name,))


def augment_key(*choices: str) -> Key:
    """``augment`` restricted to the augmentations that fit a source's inputs."""
    return Key("choice", AUGMENT_DOC, default="none", choices=("none", *choices))


def resize_check(native: int) -> Check:
    """An ``input_size`` other than the stored size (``image_size``, else ``native``) only
    means something to ``resized_crop_flip`` (methods §2 Tiny ImageNet): any other
    augmentation feeds the network the stored size, so such a block is refused."""

    def check(values: Mapping[str, Any]) -> tuple[str, str] | None:
        size, stored = values["input_size"], values.get("image_size") or native
        if size is None or size == stored or values["augment"] == "resized_crop_flip":
            return None
        return ("input_size", f"{size} differs from the stored size {stored}, but only "
                f"augment resized_crop_flip resizes to it (augment is {values['augment']}): "
                f"set augment: resized_crop_flip, or remove input_size")

    return check


def resized_image_source(name: str, prepare: Callable[..., Any], size: int,
                         train_images: int) -> Source:
    """A downloaded image source stored at ``image_size`` (shorter side resized, centre
    crop; default ``size``) with ``train_images`` training images (Tiny ImageNet, CUB)."""
    return Source(
        name=name, prepare=prepare, downloads=True,
        keys={"source": source_key(name), **COMMON, **DOWNLOADED, **IMAGES,
              "image_size": Key("int", "stored size: shorter side resized, centre-cropped",
                                default=size, low=8, high=256),
              "augment": augment_key("crop_flip", "resized_crop_flip")},
        train_pool=lambda opts: train_images, checks=(resize_check(size),),
        files=tuple(a.filename for a in download.SOURCES[name]))

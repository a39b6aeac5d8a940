"""The data layer's entry point (methods §2 validation hold-out, §5 datasets): the
dispatcher :func:`prepare_dataset` above the sources, and the prepared format's names.

The data layer reads top-down: this module → :mod:`selfdistill.sources` (one module per
generator or archive parser, which also checks a dataset block before anything is
prepared) → :mod:`selfdistill.prepared` (the format: ``{split}.npz`` + ``manifest.json``,
written by the sources, read by training). The format's names are re-exported here, so
``from selfdistill.data import load_split`` reads the same objects as
``from selfdistill.prepared import load_split``. Archives live in
``resources/downloads/<source>`` by default (:func:`selfdistill.download.download_dir`),
outside ``results/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import sources
from .prepared import (
    MANIFEST_KEYS,
    SPLITS,
    DataError,
    Split,
    load_manifest,
    load_split,
    split_holdout,
    write_prepared,
)

__all__ = [
    "MANIFEST_KEYS",
    "SPLITS",
    "DataError",
    "Split",
    "load_manifest",
    "load_split",
    "prepare_dataset",
    "split_holdout",
    "write_prepared",
]


def prepare_dataset(name: str, params: Mapping[str, Any], out_dir: str | Path,
                    download_dir: str | Path | None = None) -> dict[str, Any]:
    """Prepare dataset ``name`` described by its config block ``params``: the block is
    checked (:func:`selfdistill.sources.validate_dataset`; ValueError naming the key), then
    its ``source``'s preparer writes ``out_dir``. ``download_dir`` holds the source's
    archives (default ``resources/downloads/<source>``); the manifest records ``params``
    as given."""
    source = sources.get_source(name, params)
    opts = source.resolve(name, params)
    if source.downloads:
        return source.prepare(name, params, opts, out_dir, download_dir=download_dir)
    return source.prepare(name, params, opts, out_dir)

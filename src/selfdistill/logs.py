"""Where a workflow job's messages go: its rule's ``log:`` file.

Every wrapper in ``workflow/scripts/`` calls :func:`to_rule_log` right after its imports, so
log records, warnings and an uncaught traceback all land in the job's log file (the
rna-seq-star-deseq2 pattern). No torch import: measure and render jobs stay cheap.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO

__all__ = ["LOG_FORMAT", "to_rule_log"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def to_rule_log(path: str | Path, level: int = logging.INFO) -> TextIO:
    """Append this process's stderr and logging to ``path``; returns the open stream.

    ``sys.stderr`` is pointed at the file, so Python's traceback of an uncaught exception
    and ``warnings`` are written there; the root logger writes ``LOG_FORMAT`` lines to it.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "a", buffering=1, encoding="utf-8")  # open for the job's lifetime
    sys.stderr = stream
    logging.basicConfig(stream=stream, level=level, format=LOG_FORMAT, force=True)
    return stream

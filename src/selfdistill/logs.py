"""Where a workflow job's messages go: its rule's ``log:`` file.

Every wrapper in ``workflow/scripts/`` calls :func:`to_rule_log` right after its imports, so
log records, warnings and an uncaught traceback all land in the job's log file (the
rna-seq-star-deseq2 pattern). A job that fails also says why on the terminal: its error's
class and message (the project's named errors say what to fix) go to the stderr Snakemake
shows, with the log's path for the traceback. No torch import: measure and render jobs
stay cheap.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from types import TracebackType
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
    terminal = sys.stderr
    sys.stderr = stream
    logging.basicConfig(stream=stream, level=level, format=LOG_FORMAT, force=True)
    sys.excepthook = _failure_hook(stream, terminal, Path(path))
    return stream


def _failure_hook(log: TextIO, terminal: TextIO, path: Path):
    """An uncaught exception: its traceback to the log, its class and message (one line
    each, so the named error's fix is readable) to the terminal's stderr."""

    def hook(kind: type[BaseException], err: BaseException, tb: TracebackType | None) -> None:
        traceback.print_exception(kind, err, tb, file=log)
        log.flush()
        if issubclass(kind, KeyboardInterrupt):
            return
        text = " ".join(str(err).split()) or "(no message)"
        try:
            terminal.write(f"selfdistill: {kind.__name__}: {text}\n"
                           f"selfdistill: traceback in {path}\n")
            terminal.flush()
        except (OSError, ValueError):  # the terminal is gone: the log has it all
            pass

    return hook

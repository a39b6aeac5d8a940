"""Optional TensorBoard event files of a training run (``execution.tensorboard``).

With the switch on, :class:`CurveLog` writes ``<run_dir>/tensorboard/events.out.tfevents.*``
through :class:`torch.utils.tensorboard.SummaryWriter`: one scalar per curve column of
``history.csv`` (:data:`CURVES`, the tag is the column's name) at global step = epoch, and
the run's identity as the text summary ``run`` (step 0). ``tensorboard --logdir results``
then shows every network, named by its run directory
(``mnist1d/cnn1d/ce/none/seed0/gen0/tensorboard``).

Events are written after the epoch's ``history.csv`` row exists
(:class:`selfdistill.run.EpochReport`) and flushed at once, so a kill loses none.
Decision for a resumed run: the folder's earlier event files are removed and one new file
begun with the epochs the resume file holds (their history rows, at their recorded times),
then the new epochs. The folder so holds each epoch of ``history.csv`` exactly once, and
never an epoch of an abandoned attempt (a kill can leave events of epochs after the last
resume file, which the resumed run trains again). A ``purge_step`` would hide such events
from TensorBoard's reader but leave them in the files.

Scalars are float32 (TensorBoard's scalar); ``history.csv`` keeps the float64 values.
Writing events only reads the rows: ``model.pt``, ``preds.npz`` and ``history.csv`` (but its
clock columns) are the same bytes with the switch on or off (tests/unit/test_tensorboard.py),
so the switch is not part of a network's identity (:func:`selfdistill.run.run_fingerprint`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CURVES", "FOLDER", "RUN_TAG", "CurveLog", "TensorBoardMissingError",
           "summary_writer"]

FOLDER = "tensorboard"  # inside the run directory
RUN_TAG = "run"  # text summary: the run's identity and fingerprint
# history.csv columns that are curves of the training (methods §2 recipe; the validation
# columns of selfdistill.train.VALIDATION_COLUMNS where a run has them: an empty cell, such
# as the teacher columns of a run without a teacher, writes no scalar); the clock columns
# (time_s, train_step_s, step_*_unix) are not the network's numbers
CURVES = ("train_loss", "train_accuracy", "val_accuracy", "lr", "val_loss", "val_nll",
          "val_teacher_agreement", "val_teacher_kl")


class TensorBoardMissingError(RuntimeError):
    """``execution.tensorboard`` is on but ``tensorboard`` cannot be imported."""


def summary_writer() -> type:
    """:class:`torch.utils.tensorboard.SummaryWriter`, or :class:`TensorBoardMissingError`
    naming the key and the fix when the optional ``tensorboard`` package is absent."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise TensorBoardMissingError(
            f"execution.tensorboard (--tensorboard) is on, but TensorBoard cannot be imported "
            f"({err}); install the optional extra, pip install -e \".[tensorboard]\", or set "
            f"execution.tensorboard: false (--no-tensorboard)") from None
    return SummaryWriter


class CurveLog:
    """The event files of one run in ``<run_dir>/tensorboard/``: :meth:`start` before the
    first epoch (with the rows a resumed run has done), :meth:`epoch` after each, then
    :meth:`close`."""

    def __init__(self, run_dir: str | Path, identity: str, fingerprint: str) -> None:
        self.dir = Path(run_dir) / FOLDER
        self.identity, self.fingerprint = identity, fingerprint
        self._writer: Any = None

    def start(self, done: Sequence[Mapping[str, Any]]) -> None:
        """A new event file holding the identity and the ``done`` rows (earlier files removed)."""
        writer_class = summary_writer()
        self.close()
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("events.out.tfevents.*"):
            old.unlink()
        self._writer = writer_class(log_dir=str(self.dir))
        self._writer.add_text(RUN_TAG, f"`{self.identity}` (fingerprint `{self.fingerprint}`)",
                              global_step=0)
        for row in done:
            self._scalars(row)
        self._writer.flush()

    def epoch(self, row: Mapping[str, Any]) -> None:
        """The epoch's curves at global step = epoch, flushed."""
        self._scalars(row)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _scalars(self, row: Mapping[str, Any]) -> None:
        # walltime: the end of the epoch's optimiser steps as recorded, so a replayed row
        # of a resumed run carries the time it was trained at
        walltime = row.get("step_end_unix")
        for tag in CURVES:
            if row.get(tag) in (None, ""):  # not a column of this run (or of an old row)
                continue
            self._writer.add_scalar(tag, float(row[tag]), global_step=int(row["epoch"]),
                                    walltime=None if walltime is None else float(walltime))

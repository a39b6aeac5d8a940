"""Progress lines and the read-only summary of a half-finished results tree
(selfdistill.progress)."""

import json
import os
import time
from pathlib import Path

import pytest

from selfdistill.progress import (
    RunStatus,
    duration,
    epoch_line,
    grid_eta,
    main,
    render,
    summarize,
    write_progress,
)

NOW = time.time()
PROGRESS = "progress.json"
ROW = {"epoch": 37, "lr": 0.1, "train_loss": 0.4123, "train_accuracy": 0.881,
       "val_accuracy": 0.843, "time_s": 12.4}
HISTORY_HEADER = "dataset,arch,method,param,seed,gen,epoch,lr,train_loss,train_accuracy," \
                 "val_accuracy,time_s,epochs\n"


def test_epoch_line_reads_as_specified():
    assert epoch_line(ROW, 150, None, 12.4) == (
        "epoch 37/150 · loss 0.412 · train 88.1 % · val 84.3 % · lr 0.1 · 12.4 s/epoch · "
        "ETA 23 min")  # (150 - 37) x 12.4 s = 23.4 min
    line = epoch_line(ROW, 150, (3, 14), 12.4, identity="cifar10/resnet34/sd/none/seed0/gen1")
    assert line.startswith("network 3/14 · cifar10/resnet34/sd/none/seed0/gen1 · epoch 37/150 ·")
    last = epoch_line({"epoch": 150, "val_accuracy": 0.9}, 150, None, 12.4)
    assert last == "epoch 150/150 · val 90.0 % · 12.4 s/epoch · ETA 0 s"


@pytest.mark.parametrize("seconds, text", [(45, "45 s"), (23.4 * 60, "23 min"),
                                           (2.4 * 3600, "2.4 h"), (3.1 * 86400, "3.1 d")])
def test_duration_units(seconds, text):
    assert duration(seconds) == text


def run_dir(root: Path, identity: str) -> Path:
    path = root / identity
    path.mkdir(parents=True)
    return path


def touch(path: Path, text: str, age_s: float) -> None:
    path.write_text(text)
    os.utime(path, (NOW - age_s, NOW - age_s))


def progress(epoch: int, epochs: int, spe: float, age_s: float) -> str:
    return json.dumps({"epoch": epoch, "epochs": epochs, "network": 1, "networks": 1,
                       "seconds_per_epoch": spe, "val_accuracy": 0.5,
                       "updated_unix": NOW - age_s})


@pytest.fixture
def tree(tmp_path) -> tuple[Path, list[Path]]:
    """Two done, two running, two stale and two planned-but-absent runs."""
    root = tmp_path / "results"
    for ident, wall in [("cifar10/resnet34/ce/none/seed0/gen0", 600.0),
                        ("cifar10/resnet34/sd/none/seed0/gen1", 900.0)]:
        touch(run_dir(root, ident) / "run.json", json.dumps({"wall_time_s": wall}), 50)
        touch(root / ident / PROGRESS, progress(150, 150, 4.0, 60), 60)  # left over: still done
    touch(run_dir(root, "cifar10/resnet34/sd/none/seed0/gen2") / PROGRESS,
          progress(37, 150, 12.4, 5), 5)
    rows = [f"cifar10,resnet34,ls,0.1,0,0,{e},0.1,1.0,0.5,0.{e},{t},150\n"
            for e, t in [(1, 10.0), (2, 12.0), (3, 14.0)]]
    touch(run_dir(root, "cifar10/resnet34/ls/0.1/seed0/gen0") / "history.csv",
          HISTORY_HEADER + "".join(rows) + "cifar10,resnet34,ls,0.1,0,0,4,0.1,0.9", 2)
    touch(run_dir(root, "cifar10/resnet34/er/0.3/seed0/gen0") / PROGRESS,
          progress(12, 150, 10.0, 1000), 1000)
    touch(run_dir(root, "cifar10/resnet34/er/1/seed0/gen0") / "resume.pt", "x", 1000)
    run_dir(root, "cifar10/resnet34/bs/3/seed0/gen0")  # created, nothing written yet
    expected = [root / "cifar10/resnet34/bs/3/seed0/gen0",
                root / "cifar10/densenet_bc100/ce/none/seed0/gen0",
                root / "cifar10/resnet34/ce/none/seed0/gen0"]
    return root, expected



def states(statuses: list[RunStatus]) -> dict[str, str]:
    return {s.identity: s.state for s in statuses}


def test_summarize_classifies_every_run(tree):
    root, expected = tree
    got = {s.identity: s for s in summarize(root, expected, now=NOW)}
    assert states(list(got.values())) == {
        "cifar10/resnet34/ce/none/seed0/gen0": "done",
        "cifar10/resnet34/sd/none/seed0/gen1": "done",
        "cifar10/resnet34/sd/none/seed0/gen2": "running",
        "cifar10/resnet34/ls/0.1/seed0/gen0": "running",
        "cifar10/resnet34/er/0.3/seed0/gen0": "failed",
        "cifar10/resnet34/er/1/seed0/gen0": "failed",
        "cifar10/resnet34/bs/3/seed0/gen0": "waiting",
        "cifar10/densenet_bc100/ce/none/seed0/gen0": "waiting",
    }
    sd = got["cifar10/resnet34/sd/none/seed0/gen2"]
    assert (sd.epoch, sd.epochs, sd.eta_s) == (37, 150, pytest.approx((150 - 37) * 12.4))
    ls = got["cifar10/resnet34/ls/0.1/seed0/gen0"]  # the truncated 4th row is dropped
    assert (ls.epoch, ls.epochs, ls.val_accuracy) == (3, 150, 0.3)
    assert ls.eta_s == pytest.approx((150 - 3) * (10 + 12 + 14) / 3)
    assert got["cifar10/resnet34/ce/none/seed0/gen0"].network_s == 600.0


def test_grid_eta_arithmetic(tree):
    root, expected = tree
    statuses = summarize(root, expected, now=NOW)
    work = (150 - 37) * 12.4 + (150 - 3) * 12.0 + (600 + 900) / 2  # the bs run: mean done time
    eta = grid_eta(statuses)  # two runs going at once; the densenet run has no timing
    assert (eta.seconds, eta.untimed, eta.concurrency) == (pytest.approx(work / 2), 1, 2)
    assert grid_eta(statuses, concurrency=4).seconds == pytest.approx(work / 4)


def test_waiting_runs_are_timed_by_running_runs_of_their_group_when_none_is_done(tmp_path):
    root = tmp_path / "results"
    touch(run_dir(root, "c/a/ce/none/seed0/gen0") / PROGRESS, progress(10, 100, 2.0, 1), 1)
    statuses = summarize(root, [root / "c/a/ls/0.1/seed0/gen0"], now=NOW)
    assert grid_eta(statuses).seconds == pytest.approx(90 * 2.0 + 100 * 2.0)


@pytest.mark.parametrize("age_s, state", [(250, "running"), (350, "failed")])
def test_stale_after_three_epoch_times(tmp_path, age_s, state):
    root = tmp_path / "results"
    touch(run_dir(root, "c/a/ce/none/seed0/gen0") / PROGRESS, progress(3, 9, 100.0, age_s), age_s)
    assert summarize(root, now=NOW)[0].state == state


def test_half_written_files_fall_back_or_count_as_not_started(tmp_path):
    root = tmp_path / "results"
    run = run_dir(root, "c/a/ce/none/seed0/gen0")
    touch(run / PROGRESS, '{"epoch": 3, "epo', 1)  # not JSON: history.csv is read instead
    touch(run / "history.csv", "epoch,lr,val_accuracy,time_s\n1,0.1,0.5,2.0\n2,0.1,0.6,4.0\n", 1)
    (s,) = summarize(root, now=NOW)
    assert (s.state, s.epoch, s.epochs, s.seconds_per_epoch, s.eta_s) == (
        "running", 2, None, 3.0, None)
    other = run_dir(root, "c/a/ce/none/seed1/gen0")
    touch(other / "history.csv", "epoch,lr,val_acc", 1)  # header cut short, no rows
    assert summarize(root, now=NOW)[1].state == "waiting"


def test_written_progress_is_what_summarize_reads(tmp_path):
    root = tmp_path / "results"
    run = run_dir(root, "c/a/sd/none/seed0/gen1")
    write_progress(run, ROW, 150, (3, 14), 12.4)
    (s,) = summarize(root)
    assert (s.state, s.epoch, s.epochs, s.val_accuracy, s.seconds_per_epoch) == (
        "running", 37, 150, 0.843, 12.4)
    assert sorted(p.name for p in run.iterdir()) == [PROGRESS]  # no temporary file left


def test_render_and_main(tree, capsys):
    root, expected = tree
    text = render(summarize(root, expected, now=NOW), now=NOW)
    assert text.splitlines()[0] == "2 done · 2 running · 2 failed · 2 waiting (8 runs)"
    assert "1 run(s) without a time estimate" in text
    assert str(root / "cifar10/resnet34/er/0.3/seed0/gen0") in text
    assert "cifar10/densenet_bc100: 1" in text
    plan = root.parent / "plan.txt"
    plan.write_text("\n".join(str(p) for p in expected) + "\n")
    assert main([str(root), "--expected", str(plan), "--jobs", "4"]) == 0
    out = capsys.readouterr().out
    assert "2 waiting (8 runs)" in out and "at 4 run(s) at once" in out
    assert main([str(root.parent / "missing")]) == 1


def test_main_reads_the_workflow_plan_by_default(tree, capsys):
    """The workflow writes results/.planned_runs at each start (common.smk onstart)."""
    root, expected = tree
    assert main([str(root)]) == 0
    assert "1 waiting (7 runs)" in capsys.readouterr().out  # only the created-but-empty run
    (root / ".planned_runs").write_text("".join(f"{p}\n" for p in expected))
    assert main([str(root)]) == 0
    assert "2 waiting (8 runs)" in capsys.readouterr().out

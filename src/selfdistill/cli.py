"""Command line: train one network outside Snakemake, through the rules' own code path.

    python -m selfdistill train --data results/data/mnist1d --arch cnn1d --method ce \\
        --seed 0 --out runs/ce0
    python -m selfdistill train --data results/data/mnist1d --arch cnn1d --method sd \\
        --gen 1 --teacher runs/ce0/model.pt --seed 0 --out runs/sd1
    python -m selfdistill prepare --source mnist1d --out results/data/mnist1d
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .methods import METHODS, SWEPT
from .train import TrainConfig

_TRAIN_DEFAULTS = TrainConfig(epochs=150, milestones=(50, 100), seed=0)


def _option_flag(method: str, option: str) -> str:
    """``--sd-alpha`` for option ``alpha`` of method ``sd``; its dest is ``sd_alpha``."""
    return f"--{method}-{option}".replace("_", "-")


def _add_method_options(p: argparse.ArgumentParser) -> None:
    """One flag per option of each registry method, default from the registry (SPEC §3)."""
    for m in METHODS.values():
        group = p.add_argument_group(f"{m.label} options (SPEC §{m.section}; used with "
                                     f"--method {m.name})")
        for option, default in m.options().items():
            flag, dest = _option_flag(m.name, option), f"{m.name}_{option}"
            if isinstance(default, bool):
                group.add_argument(flag, dest=dest, default=default,
                                   action=argparse.BooleanOptionalAction,
                                   help=f"{m.label} {option} (default: %(default)s)")
            else:
                group.add_argument(flag, dest=dest, default=default, type=type(default),
                                   help=f"{m.label} {option} (default: %(default)s)")


def _method_options(args: argparse.Namespace) -> dict[str, object]:
    """The chosen method's options from its flags (the config block ``methods.<method>``)."""
    m = METHODS[args.method]
    return {option: getattr(args, f"{m.name}_{option}") for option in m.options()}


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one network (SPEC §2 recipe, §3 methods)",
                       description="Train one network and write model.pt, history.csv, "
                                   "preds.npz and run.json into --out.")
    p.add_argument("--data", required=True, help="prepared dataset directory (manifest.json)")
    p.add_argument("--arch", required=True, help="model registry name, e.g. cnn1d, resnet34")
    p.add_argument("--method", required=True, choices=list(METHODS))
    strengths = ", ".join(f"{m.name} {m.swept}" for m in SWEPT)
    p.add_argument("--param", type=float, default=None,
                   help=f"strength: {strengths} (required for those methods)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gen", type=int, default=0, help="SD generation (>= 1 for sd)")
    p.add_argument("--teacher", default=None, help="teacher model.pt (sd only)")
    p.add_argument("--out", required=True, help="output run directory")
    p.add_argument("--epochs", type=int, default=_TRAIN_DEFAULTS.epochs)
    p.add_argument("--milestones", type=int, nargs="*", default=None,
                   help="lr x0.1 after these epochs (default: E/3 and 2E/3, SPEC §2)")
    p.add_argument("--batch-size", type=int, default=_TRAIN_DEFAULTS.batch_size)
    p.add_argument("--lr", type=float, default=_TRAIN_DEFAULTS.lr)
    p.add_argument("--augment", default="none",
                   choices=["none", "crop_flip", "shift1d", "resized_crop_flip"])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=1)
    _add_method_options(p)


def _prepare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="prepare an embedded dataset (MNIST-1D or 8x8 digits)")
    p.add_argument("--source", required=True, choices=["mnist1d", "sklearn_digits"])
    p.add_argument("--out", required=True)
    p.add_argument("--num-samples", type=int, default=15000)
    p.add_argument("--val-size", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="validation split seed")


def _run_train(args: argparse.Namespace) -> None:
    from .run import RunSpec, train_run

    milestones = args.milestones
    if milestones is None:
        milestones = [round(args.epochs / 3), round(2 * args.epochs / 3)]
    cfg = TrainConfig(epochs=args.epochs, milestones=tuple(m for m in milestones if m > 0),
                      seed=args.seed, batch_size=args.batch_size, lr=args.lr,
                      augment=args.augment)
    spec = RunSpec(dataset_dir=args.data, arch=args.arch, method=args.method, param=args.param,
                   seed=args.seed, gen=args.gen, out_dir=args.out, train=cfg,
                   options=_method_options(args),
                   teacher=args.teacher, device=args.device, threads=args.threads,
                   config={"cli": vars(args)})
    record = train_run(spec)
    print(f"{spec.describe()} best epoch {record['best_epoch']} val accuracy "
          f"{record['best_val_accuracy']:.4f} on {record['device']} in "
          f"{record['wall_time_s']:.1f} s -> {args.out}")


def _run_prepare(args: argparse.Namespace) -> None:
    from .data import prepare_dataset

    params = {"source": args.source, "val_size": args.val_size, "split_seed": args.seed,
              "generator_seed": 42 if args.source == "mnist1d" else 0}
    if args.source == "mnist1d":
        params.update(num_samples=args.num_samples, train_fraction=0.8)
    else:
        params.update(test_fraction=0.25, standardize=True)
    manifest = prepare_dataset(args.source, params, args.out)
    print(f"prepared {args.source} -> {args.out}: {manifest['sizes']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="selfdistill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _prepare_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        {"train": _run_train, "prepare": _run_prepare}[args.command](args)
    except (RuntimeError, ValueError, KeyError, PermissionError, FloatingPointError) as err:
        print(f"selfdistill: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

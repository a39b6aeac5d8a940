"""Publish a finished run's figures, tables and claims check under ``docs/results/``.

The README shows the default run from there, so a reader of the repository sees real
output without running anything. ``snakemake --cores 2 publish`` (after ``all``) refreshes
the folder; ``docs/results/README.md`` records the commit, date, machine and wall time the
files came from (read from the figures' provenance sidecars), so a stale copy is visible.

    python -m selfdistill.publish --figures figures --results results --out docs/results
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from .io import write_text

__all__ = ["OPTIONAL", "PUBLISHED", "publish"]

# Figures as PNG (PDFs stay local), the Markdown tables and the claims check.
PUBLISHED = ("e1_generations.png", "e2_entropy_accuracy.png", "e4_reliability.png",
             "e5_beta_sensitivity.png", "claims.md", "claims.csv", "e3_methods.md",
             "e2_matched_entropy.md")
OPTIONAL = ("e6_teacher_free.png", "e6_teacher_free_table.md")
"""E6 (methods §5), published when the run rendered it (an experiment with the teacher-free
family)."""


def _source(figures: Path) -> dict[str, str]:
    """Commit, date, host and versions of the run, from the claims sidecar."""
    side = json.loads((figures / "claims.json").read_text())
    git = side.get("git") or {}
    commit = str(git.get("commit") or "unknown")
    dirty = " (with uncommitted changes)" if git.get("dirty") else ""
    return {"commit": commit + dirty, "date": str(side.get("created_utc", "unknown")),
            "host": str(side.get("host", "unknown")),
            "torch": str((side.get("versions") or {}).get("torch", "unknown"))}


def publish(figures: str | Path, results: str | Path, out: str | Path,
            wall_s: float | None = None,
            configfiles: Sequence[str] = ("config/config.yaml",)) -> list[Path]:
    """Copy :data:`PUBLISHED` (and those of :data:`OPTIONAL` the run has) from ``figures``
    into ``out`` and write its README.md, naming the run's ``configfiles``."""
    figures, out = Path(figures), Path(out)
    missing = [n for n in PUBLISHED if not (figures / n).exists()]
    if missing:
        raise FileNotFoundError(f"{figures}: missing {missing}; run `snakemake --cores 2 all` "
                                f"before publishing.")
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    names = [*PUBLISHED, *(n for n in OPTIONAL if (figures / n).exists())]
    for name in names:
        shutil.copyfile(figures / name, out / name)
        copied.append(out / name)
    src = _source(figures)
    n_rows = sum(1 for _ in open(Path(results) / "metrics.csv")) - 1
    wall = f"{wall_s:.0f} s" if wall_s is not None else "not recorded"
    extra = [f for f in configfiles if f != "config/config.yaml"]
    what = ("default run" if not extra else f"run of {', '.join(f'`{f}`' for f in extra)}")
    flags = "".join(f" --configfile {f}" for f in extra)
    write_text(out / "README.md", f"""# The published {what}

Produced by `snakemake --cores 2 all{flags}` (on top of the default `config/config.yaml`),
then copied here by `snakemake --cores 2 publish{flags}`. Regenerate both to refresh.

| | |
|---|---|
| commit | `{src['commit']}` |
| claims check written (UTC) | {src['date']} |
| machine | {src['host']}, CPU, torch {src['torch']} |
| wall time of `all` | {wall} |
| rows of results/metrics.csv | {n_rows} |

Files: {', '.join(f'[{n}]({n})' for n in names)}.
""")
    return copied


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--figures", default="figures")
    ap.add_argument("--results", default="results")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--wall", type=float, default=None, help="wall time of `all` in seconds")
    args = ap.parse_args(argv)
    for path in publish(args.figures, args.results, args.out, args.wall):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

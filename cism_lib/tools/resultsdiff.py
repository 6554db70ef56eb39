"""Compare two results folders CSV by CSV: are a fresh clone's tables the committed ones, exactly?

    python -m cism_lib.tools.resultsdiff results ../fresh-clone/results [--tol 0]

For each CSV of the first folder (not in sub-folders: those are other profiles), the same file in
the second one is compared cell by cell: text cells must be equal, numeric cells equal within
--tol (default 0: exactly as written, 4 decimals). One line per file (identical, or how many cells
differ, the largest numeric |difference| and where); exit status 1 when any file differs or is
missing, so the check can gate a release.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class FileDiff:
    """How one CSV of the reference folder compares with its namesake in the other folder."""

    name: str
    status: str                   # identical | differs | missing | shape
    cells: int = 0                # cells that differ
    max_abs: float = 0.0          # the largest numeric |difference|
    where: str = ""               # "row <i>, column <c>" of that largest difference

    def line(self) -> str:
        if self.status == "identical":
            return f"{self.name}: identical"
        if self.status == "missing":
            return f"{self.name}: missing from the second folder"
        if self.status == "shape":
            return f"{self.name}: {self.where}"
        return f"{self.name}: {self.cells} cell(s) differ, largest |difference| {self.max_abs:.4g} ({self.where})"


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def diff_csv(a: Path, b: Path, tol: float = 0.0) -> FileDiff:
    """Cell-by-cell comparison of two CSVs read as pandas reads them (NaN equals NaN)."""
    if not b.is_file():
        return FileDiff(a.name, "missing")
    left, right = pd.read_csv(a), pd.read_csv(b)
    if list(left.columns) != list(right.columns) or len(left) != len(right):
        return FileDiff(a.name, "shape", where=f"columns {list(left.columns)} × {len(left)} rows vs "
                        f"{list(right.columns)} × {len(right)} rows")
    cells, worst, where = 0, 0.0, ""
    for col in left.columns:
        for i, (x, y) in enumerate(zip(left[col].tolist(), right[col].tolist())):
            if _is_number(x) and _is_number(y):
                if math.isnan(x) and math.isnan(y):
                    continue
                d = abs(x - y) if not (math.isnan(x) or math.isnan(y)) else math.inf
                if d > tol:
                    cells += 1
                    if d > worst or not where:
                        worst, where = d, f"row {i}, column {col!r}: {x} vs {y}"
            elif not (x == y or (pd.isna(x) and pd.isna(y))):
                cells += 1
                where = where or f"row {i}, column {col!r}: {x!r} vs {y!r}"
    return FileDiff(a.name, "differs" if cells else "identical", cells, worst, where)


def diff_folders(a: Path, b: Path, tol: float = 0.0) -> list[FileDiff]:
    """diff_csv for every CSV directly in folder a against folder b."""
    files = sorted(Path(a).glob("*.csv"))
    if not files:
        raise SystemExit(f"{a}: no CSV files to compare")
    return [diff_csv(f, Path(b) / f.name, tol) for f in files]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cism_lib.tools.resultsdiff", description=__doc__.split("\n")[0])
    ap.add_argument("reference", type=Path, help="the committed results folder")
    ap.add_argument("other", type=Path, help="the results folder of another run (e.g. a fresh clone's)")
    ap.add_argument("--tol", type=float, default=0.0, help="largest numeric difference counted as equal")
    args = ap.parse_args(argv)
    diffs = diff_folders(args.reference, args.other, args.tol)
    for d in diffs:
        print(d.line())
    same = sum(d.status == "identical" for d in diffs)
    print(f"{same} of {len(diffs)} CSV files identical" + (f" (tolerance {args.tol})" if args.tol else ""))
    return 0 if same == len(diffs) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""``fedids synth``: write SYNTHETIC flow records (WUSTL-IIoT-2021 schema) to a CSV file.

For offline demos and tests when the real dataset is not at hand. The output says, and
the file's RFC 5737 addresses show, that the records are synthetic.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import polars as pl

from fedids.data.schema import WUSTL_CLASSES, WUSTL_LABEL_COLUMN

DEFAULT_ROWS = 300_000
DEFAULT_SEED = 7


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write SYNTHETIC flow records (WUSTL-IIoT-2021 schema) to a CSV file",
        description=(
            "Generate synthetic flow records in the 49-column WUSTL-IIoT-2021 schema, with the "
            "dataset's class proportions. The records are made up: use them for demos and "
            "tests, and report results on them as synthetic."
        ),
    )
    parser.add_argument(
        "--rows", type=_positive_int, default=DEFAULT_ROWS, help=f"default {DEFAULT_ROWS}"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"default {DEFAULT_SEED}")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.set_defaults(func=run)


def write_csv_atomic(df: pl.DataFrame, out: Path) -> None:
    """Write ``df`` to ``out`` via a temporary file in the same folder, then rename.

    A reader never sees a half-written file, and an interrupted run leaves any previous
    file in place.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        df.write_csv(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    from fedids.data.synth import generate  # numpy/polars work only when the command runs

    out: Path = args.out
    if out.is_dir():
        print(f"fedids synth: --out {out} is a directory; give a file name", file=sys.stderr)
        return 2
    df = generate(args.rows, args.seed)
    try:
        write_csv_atomic(df, out)
    except OSError as exc:
        print(f"fedids synth: cannot write {out}: {exc}", file=sys.stderr)
        return 1
    counts = dict(df[WUSTL_LABEL_COLUMN].value_counts().iter_rows())
    listed = ", ".join(f"{c} {counts.get(c, 0)}" for c in WUSTL_CLASSES)
    print(
        f"wrote {df.height} rows to {out} ({listed}); seed {args.seed}. "
        "These flow records are SYNTHETIC (generated, not real traffic)."
    )
    return 0

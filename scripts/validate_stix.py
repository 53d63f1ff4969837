#!/usr/bin/env python3
"""Validate STIX bundles (JSONL, one per line) with the OASIS ``stix2-validator``.

    python scripts/validate_stix.py alerts.jsonl [more.jsonl ...] [--allow 103] [--json]

Why a separate environment: stix2-validator needs ``antlr4-python3-runtime`` 4.13, while
hydra-core (used by fedids) pins 4.9; both cannot live in one venv. This script creates
its own venv on first use (``pip install stix2-validator==3.3.2``), at
``$FEDIDS_STIXVAL_VENV`` or else ``~/.cache/fedids/stix2-validator-venv``, and re-runs
itself there. It needs nothing from fedids and never touches the project's venv.

Prints one line per warning/error code with its count, then a verdict. Exit status:
0 every bundle is valid and every warning code is in ``--allow``; 1 otherwise;
2 the validator could not be installed or an input is unreadable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import venv
from collections import Counter
from pathlib import Path

VALIDATOR = "stix2-validator==3.3.2"
_CODE = re.compile(r"\{(\d+)\}")


def default_venv() -> Path:
    env = os.environ.get("FEDIDS_STIXVAL_VENV")
    if env:
        return Path(env).expanduser()
    return (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "fedids"
        / ("stix2-validator-venv")
    )


def venv_python(root: Path) -> Path:
    return root / "bin" / "python"


def ensure_venv(root: Path) -> Path:
    """The venv's python, after creating it and installing the validator if needed."""
    py = venv_python(root)
    probe = [str(py), "-c", "import stix2validator"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    print(f"installing {VALIDATOR} into {root} (one time) ...", file=sys.stderr, flush=True)
    venv.EnvBuilder(with_pip=True, clear=py.exists()).create(root)
    pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", VALIDATOR]
    result = subprocess.run(pip, capture_output=True, text=True)
    if result.returncode != 0 or subprocess.run(probe, capture_output=True).returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"could not install {VALIDATOR} into {root}: {' | '.join(tail)}")
    return py


def validate(paths: list[Path]) -> dict:
    """Run inside the validator's venv: counts per code over every bundle."""
    from stix2validator import ValidationOptions, validate_instance

    options = ValidationOptions(version="2.1")
    warnings: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    examples: dict[str, str] = {}
    bundles = invalid = 0
    for path in paths:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            bundles += 1
            try:
                result = validate_instance(json.loads(line), options)
            except Exception as exc:  # not JSON, or the validator itself gave up
                invalid += 1
                errors["unreadable"] += 1
                examples.setdefault("unreadable", f"{path}:{n}: {exc}")
                continue
            if not result.is_valid:
                invalid += 1
            for kind, sink in (("warnings", warnings), ("errors", errors)):
                for msg in getattr(result, kind) or []:
                    text = str(msg)
                    m = _CODE.search(text)
                    code = m.group(1) if m else "schema"
                    sink[code] += 1
                    examples.setdefault(code, f"{path}:{n}: {text}")
    return {
        "bundles": bundles,
        "invalid": invalid,
        "warnings": dict(warnings),
        "errors": dict(errors),
        "examples": examples,
    }


def report(res: dict, allow: set[str]) -> int:
    n = res["bundles"]
    print(f"{n} bundle(s): {n - res['invalid']} valid, {res['invalid']} invalid")
    for kind in ("errors", "warnings"):
        for code, count in sorted(res[kind].items()):
            note = " (allowed)" if kind == "warnings" and code in allow else ""
            per = f", {count / n:.1f} per bundle" if n else ""
            print(f"  {kind[:-1]} {{{code}}} x{count}{per}{note}: {res['examples'][code][:220]}")
    bad = [c for c in res["warnings"] if c not in allow]
    ok = n > 0 and res["invalid"] == 0 and not res["errors"] and not bad
    print("OK" if ok else "NOT OK")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="JSONL files of STIX bundles")
    p.add_argument("--allow", default="", help="comma-separated warning codes to accept")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.add_argument("--venv", type=Path, default=default_venv(), help="validator venv")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for f in args.files:
        if not f.is_file():
            print(f"validate_stix: error: {f} is not a file", file=sys.stderr)
            return 2
    if not args.inside:
        try:
            py = ensure_venv(args.venv)
        except (RuntimeError, OSError) as exc:
            print(f"validate_stix: error: {exc}", file=sys.stderr)
            return 2
        cmd = [str(py), str(Path(__file__).resolve()), "--inside", *map(str, args.files)]
        cmd += ["--allow", args.allow] + (["--json"] if args.json else [])
        return subprocess.run(cmd).returncode
    res = validate(args.files)
    if args.json:
        print(json.dumps(res, indent=2))
        bad = [c for c in res["warnings"] if c not in set(filter(None, args.allow.split(",")))]
        return 0 if res["bundles"] and not res["invalid"] and not res["errors"] and not bad else 1
    return report(res, set(filter(None, args.allow.split(","))))


if __name__ == "__main__":
    sys.exit(main())

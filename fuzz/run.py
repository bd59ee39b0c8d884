"""Run every fuzz target for N seconds from the committed seed corpus.

    python -m fuzz --seconds 30                 # every target, 30 s each
    python -m fuzz --seconds 300 --target krpc  # one target (repeatable)
    python -m fuzz --list

With atheris installed (``pip install atheris``; wheels exist for CPython 3.11 on
Linux) each target runs coverage-guided under libFuzzer in its own process, starting
from ``fuzz/corpus/<target>/`` (new interesting inputs go to a scratch directory, so the
committed corpus only changes by hand).  Without atheris, hypothesis drives the same
targets with random and mutated inputs for the same time (``--engine hypothesis``
forces that).  An input that breaks a target's contract is saved under
``fuzz/crashes/<target>/``: fix the code, commit the input, and ``test/test_fuzz.py``
replays it for ever after.  Exit status: 0 when every target held, 1 otherwise.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"


def corpus_of(target: str) -> list[bytes]:
    """The committed seeds and regression inputs of ``target``."""
    found = []
    for folder in (CORPUS / target, CRASHES / target):
        if folder.is_dir():
            found.extend(path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file())
    return found


def run_atheris(target: str, seconds: float, scratch: Path) -> tuple[bool, str]:
    """One libFuzzer run of ``target`` in a child process; (held, summary line)."""
    new_inputs = scratch / target / "new"
    artifacts = scratch / target / "artifacts"
    new_inputs.mkdir(parents=True)
    artifacts.mkdir(parents=True)
    command = [sys.executable, "-m", "fuzz.atheris_main", target, f"-max_total_time={max(1, int(seconds))}",
               f"-artifact_prefix={artifacts}/", "-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1",
               str(new_inputs), str(CORPUS / target)]
    if (CRASHES / target).is_dir():
        command.append(str(CRASHES / target))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p))
    result = subprocess.run(command, cwd=HERE.parent, env=env, capture_output=True, text=True,
                            timeout=seconds + 120)
    log = result.stdout + result.stderr
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    coverage = re.findall(r"cov: (\d+)", log)
    summary = f"{runs.group(1) if runs else '?'} runs, coverage {coverage[-1] if coverage else '?'}, " \
              f"{len(list(new_inputs.iterdir()))} new inputs"
    crashes = [p for p in artifacts.iterdir() if p.is_file()]
    if result.returncode == 0 and not crashes:
        return True, summary
    saved = _save_crashes(target, [p.read_bytes() for p in crashes])
    tail = "\n".join(log.strip().splitlines()[-25:])
    return False, f"{summary}; FAILED (exit {result.returncode}), inputs saved: {saved}\n{tail}"


def run_hypothesis(target: str, seconds: float) -> tuple[bool, str]:
    """Random and mutated inputs from hypothesis for ``seconds``; (held, summary line)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import HypothesisException

    from fuzz.strategies import inputs
    from fuzz.targets import TARGETS
    function = TARGETS[target]
    runs = 0
    failure: list[bytes] = []

    @settings(max_examples=500, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(inputs(corpus_of(target)))
    def check(data: bytes) -> None:
        nonlocal runs
        runs += 1
        try:
            function(data)
        except Exception:
            failure[:] = [data]
            raise

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            check()
        except (Exception, HypothesisException):
            saved = _save_crashes(target, failure)
            return False, f"{runs} runs; FAILED, inputs saved: {saved}\n{traceback.format_exc(limit=-3)}"
    return True, f"{runs} runs (hypothesis)"


def _save_crashes(target: str, inputs: list[bytes]) -> list[str]:
    import hashlib
    folder = CRASHES / target
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for data in inputs:
        path = folder / f"crash-{hashlib.sha1(data).hexdigest()}"
        path.write_bytes(data)
        names.append(str(path.relative_to(HERE.parent)))
    return names


def main(argv: list[str] | None = None) -> int:
    from fuzz.targets import TARGETS
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per target (default 30)")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="run only this target")
    parser.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, function in TARGETS.items():
            print(f"{name:16} {(function.__doc__ or '').splitlines()[0]}")
        return 0
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "hypothesis"
    targets = args.target or list(TARGETS)
    print(f"fuzzing {len(targets)} targets for {args.seconds:g} s each with {engine}", flush=True)
    failed = []
    scratch = Path(tempfile.mkdtemp(prefix="txtunnels-fuzz-"))
    try:
        for target in targets:
            if engine == "atheris":
                held, summary = run_atheris(target, args.seconds, scratch)
            else:
                held, summary = run_hypothesis(target, args.seconds)
            print(f"{target:16} {'ok    ' if held else 'BROKEN'} {summary}", flush=True)
            if not held:
                failed.append(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{len(targets) - len(failed)} held, {len(failed)} broken" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0

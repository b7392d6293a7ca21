"""Two `train.py` runs on one workdir, and a run restarted over the lock of a SIGKILLed one, `--rounds` times each.

    python bench/concurrent_runs.py [--rounds 10] [--keep DIR]

Each round, in fresh workdirs, on a tiny Fashion-MNIST MLP that checkpoints every 8 steps (keep 2):

    together   two runs started at the same moment
    3 s apart  the second started 3 s after the first (the first is loading data or training by then)
    stale      one run SIGKILLed as soon as its first checkpoint is complete, then the same command again

and checks, per round: the exit codes (0 for the winner, 1 for the refused run); that the refused run wrote
exactly one line to stderr, beginning `error: ` and naming the winner's pid; that the restart after the
SIGKILL warned that it took the dead run's lock over and resumed; that every checkpoint left in the workdir
verifies (`load_tree` checks each file's checksum); and that the final parameters and optimizer state are
bit-identical to an uninterrupted run's. Prints one row per case with the count of rounds that passed each
check, and every failing round's details; exits 1 if any check failed.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxnn.checkpoint import load_tree  # noqa: E402

TINY = ["--config.dataset.train_split=train[:2000]", "--config.dataset.test_split=test[:500]",
        "--config.train.epochs=3", "--config.model.hidden_units=(32,)", "--config.train.batch_size=32",
        "--config.checkpoint.every_steps=8", "--config.checkpoint.keep=2"]
CASES = ("together", "3 s apart", "stale")


def start(workdir: pathlib.Path, cache: pathlib.Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "train.py", "--config=configs/fashion_mnist_mlp.py",
                             f"--workdir={workdir}", *TINY], cwd=ROOT,
                            env=dict(os.environ, JAXNN_COMPILATION_CACHE=str(cache)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def checkpoints_verify(workdir: pathlib.Path) -> bool:
    checkpoints = workdir / "checkpoints"
    names = [p.name for p in checkpoints.iterdir() if p.name.startswith(("step_", "final", ".tmp-"))]
    if any(name.startswith(".tmp-") for name in names) or "final" not in names:
        return False
    try:
        for name in names:
            load_tree(checkpoints / name)
    except Exception:  # noqa: BLE001 - any failure to load is a damaged checkpoint, reported as such
        return False
    return True


def same_final(workdir: pathlib.Path, whole: dict) -> bool:
    try:
        final = load_tree(workdir / "checkpoints" / "final")
    except Exception:  # noqa: BLE001 - reported as a mismatch
        return False
    return list(final) == list(whole) and all(final[p].tobytes() == whole[p].tobytes() for p in whole)


def concurrent(workdir: pathlib.Path, cache: pathlib.Path, delay: float, whole: dict) -> dict:
    first = start(workdir, cache)
    time.sleep(delay)
    second = start(workdir, cache)
    runs = [first, second]
    errors = [run.communicate(timeout=600)[1] for run in runs]
    codes = [run.returncode for run in runs]
    winner = codes.index(0) if 0 in codes else 0
    loser = 1 - winner
    lines = errors[loser].strip().splitlines()
    return {"exit codes": tuple(codes),
            "first wins" if delay else "one wins": sorted(codes) == [0, 1] and (winner == 0 or not delay),
            "refused in one line": sorted(codes) == [0, 1] and len(lines) == 1 and lines[0].startswith("error: ")
            and f"is in use by pid {runs[winner].pid}" in lines[0],
            "checkpoints verify": checkpoints_verify(workdir),
            "final bit-identical": same_final(workdir, whole),
            "refusal": lines[0] if len(lines) == 1 else f"{len(lines)} lines: {errors[loser][-600:]!r}"}


def stale(workdir: pathlib.Path, cache: pathlib.Path, whole: dict) -> dict:
    killed = start(workdir, cache)
    checkpoints = workdir / "checkpoints"
    deadline = time.monotonic() + 300
    while not any((p / "meta.json").is_file() for p in checkpoints.glob("step_*")):
        if killed.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    again = start(workdir, cache)
    out, err = again.communicate(timeout=600)
    return {"exit codes": (killed.returncode, again.returncode),
            "killed, then 0": killed.returncode == -signal.SIGKILL and again.returncode == 0,
            "lock taken over": f"left by pid {killed.pid}" in err and "no longer running" in err
            and "Resuming from step_" in out,
            "checkpoints verify": checkpoints_verify(workdir),
            "final bit-identical": same_final(workdir, whole),
            "refusal": ""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--keep", help="write the workdirs here (default: a temporary directory, removed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(args.keep or tmp)
        cache = root / "xla"
        baseline = start(root / "whole", cache)
        _, err = baseline.communicate(timeout=600)
        if baseline.returncode != 0:
            sys.exit(f"the uninterrupted run failed:\n{err[-3000:]}")
        whole = load_tree(root / "whole" / "checkpoints" / "final")
        results = {case: [] for case in CASES}
        for r in range(args.rounds):
            results["together"].append(concurrent(root / f"together-{r}", cache, 0, whole))
            results["3 s apart"].append(concurrent(root / f"apart-{r}", cache, 3, whole))
            results["stale"].append(stale(root / f"stale-{r}", cache, whole))
            print(f"round {r + 1}/{args.rounds}: " + "; ".join(
                f"{case} {results[case][-1]['exit codes']}" for case in CASES), flush=True)
        failed = False
        print(f"\n| case | rounds | {' | '.join(['check'] * 4)} |")
        for case in CASES:
            checks = [k for k in results[case][0] if k not in ("exit codes", "refusal")]
            cells = [f"{k}: {sum(bool(res[k]) for res in results[case])}/{args.rounds}" for k in checks]
            print(f"| {case} | {args.rounds} | {' | '.join(cells)} |")
            for r, res in enumerate(results[case]):
                if not all(res[k] for k in checks):
                    failed = True
                    print(f"  round {r + 1} failed: {res}")
        refusals = sorted({re.sub(r"\S*/checkpoints is", "WORKDIR/checkpoints is", res["refusal"]).split(" pid ")[0]
                           for case in CASES[:2] for res in results[case]})
        print("refusal lines (up to the pid):", *refusals, sep="\n  ")
        return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

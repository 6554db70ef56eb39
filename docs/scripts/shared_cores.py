"""Two processes on one machine: the smoke classifier trained for one epoch capped at --steps steps
with 2 torch threads, by one process alone and by two at once, under each OpenMP wait policy given
(default: the runtime's own, spinning; PASSIVE: threads sleep while they wait; SPIN=N: GOMP_SPINCOUNT).
Prints each process's epoch seconds (log.jsonl). docs/benchmarks.md, "Two processes on one machine".

    python docs/scripts/shared_cores.py --steps 6 default PASSIVE
    python docs/scripts/shared_cores.py --steps 16 --alone --repeat 2 default PASSIVE
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def start(out: Path, policy: str, steps: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    if policy.startswith("SPIN="):
        env["GOMP_SPINCOUNT"] = policy[5:]
    # "default": an empty value, which the OpenMP runtime reads as unset and cism_lib leaves alone
    env["OMP_WAIT_POLICY"] = "" if policy == "default" or policy.startswith("SPIN=") else policy
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "cism_lib.cli", "train", "configs/smoke.yaml", "--out_dir", str(out),
           "--threads", "2", "--train.epochs", "1", "--train.max_steps", str(steps)]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def seconds(out: Path) -> float:
    return json.loads(next(out.glob("*/train/log.jsonl")).read_text().splitlines()[-1])["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("policies", nargs="+")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--alone", action="store_true", help="one process only")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("/tmp/cism_shared_cores"))
    args = ap.parse_args()
    for rep in range(args.repeat):
        for policy in args.policies:
            out = args.out / f"alone-{policy}-{rep}"
            start(out, policy, args.steps).wait()
            print(f"{policy} alone: {seconds(out):.1f} s for {args.steps} steps", flush=True)
            if args.alone:
                continue
            pair = [(args.out / f"pair{i}-{policy}-{rep}", None) for i in (0, 1)]
            procs = [start(o, policy, args.steps) for o, _ in pair]
            for p in procs:
                p.wait()
            print(f"{policy} two at once: {[round(seconds(o), 1) for o, _ in pair]} s", flush=True)


if __name__ == "__main__":
    main()

"""Running the tables: a table's rows × seeds, every run and chain of a profile, and `make reproduce`'s pool."""
from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from typing import Any

import pandas as pd

from cism_lib.config import RunConfig, replace
from cism_lib.errors import CismError
from cism_lib.experiments.profiles import (CAM_STAGES, _load_profile, plan_for, planned_rows, row_chain, row_config,
                                           training_config)
from cism_lib.experiments.records import _portable, run_record
from cism_lib.experiments.tables import TABLES
from cism_lib.pipeline import (CHAIN_STAGES, STAGES, chain_config, chain_dir, open_split, pending_stages, run_all,
                               run_chain, run_dir, scalar_metrics, stage_done)
from cism_lib.runfolder import RunFolder
from cism_lib.runtime import process_pool, progress_bar


def run_rows(table: str, profile: str = "cpu", seeds: Sequence[int] | None = None,
             stages: Sequence[str] = CAM_STAGES, progress: bool = True,
             base: RunConfig | None = None) -> pd.DataFrame:
    """Run (or reuse) every planned row × seed of a table; one line per run.

    `seeds` overrides the plan's seeds for every row; `base` replaces the profile's experiment
    config (e.g. `experiment_config(profile, real=True)` for the real tiles).
    """
    jobs = [(row, s) for row, plan_seeds in planned_rows(table, profile)
            for s in (plan_seeds if seeds is None else seeds)]
    report = plan_for(profile).report if base is None else "train"
    records = []
    for row, seed in progress_bar(jobs, desc=table, disable=not progress):
        cfg = row_config(row, profile, seed, base, table)
        chain = row_chain(profile, row.label, cfg) if base is None and set(stages) & {"pseudo", "segment"} else None
        rd = run_all(cfg, stages=CAM_STAGES if chain is not None else stages, progress=progress)
        # the metrics of the stages asked for: a run shared with Table 1 may have pseudo-masks and
        # a DeepLab too, depending on which notebook ran first; the table is the same either way
        record = run_record(table, row, seed, cfg, rd, report)
        if chain is not None:
            cd = run_chain(chain_config(rd, **chain), rd, progress=progress)
            record.update({**scalar_metrics(cd), "chain_dir": _portable(cd)})
        skip = tuple(prefix for stage, prefix in (("pseudo", "pseudo_"), ("segment", "seg_")) if stage not in stages)
        records.append({k: v for k, v in record.items() if not (skip and k.startswith(skip))})
    return pd.DataFrame(records)


def run_configs(configs: Mapping[str, RunConfig], stages: Sequence[str] = CAM_STAGES,
                progress: bool = True) -> dict[str, Path]:
    """Run (or reuse) several configs; {name: run folder}."""
    return {name: run_all(cfg, stages=stages, progress=progress) for name, cfg in configs.items()}


def profile_runs(profile: str) -> list[tuple[RunConfig, tuple[str, ...]]]:
    """Every run the profile's notebooks make on its own data, once each, with the stages they
    ask of it: each planned row × seed of every table (Table 1 through the whole chain) and the
    `03_train` notebook's default run (the figures' runs are table rows). The runs with the most
    stages come first, so a pool of workers ends with the short ones."""
    wanted: dict[Path, tuple[RunConfig, set[str]]] = {}

    def add(cfg: RunConfig, stages: Sequence[str]) -> None:
        wanted.setdefault(run_dir(cfg), (cfg, set()))[1].update(stages)

    for table in TABLES:
        for row, seeds in planned_rows(table, profile):
            for seed in seeds:
                cfg = row_config(row, profile, seed, table=table)
                whole = table == "table1" and row_chain(profile, row.label, cfg) is None and cfg.seg.enabled
                add(cfg, STAGES if whole else CAM_STAGES)
    add(training_config(profile), CAM_STAGES)
    jobs = [(cfg, tuple(s for s in STAGES if s in stages)) for cfg, stages in wanted.values()]
    return sorted(jobs, key=lambda job: -len(job[1]))


def profile_chains(profile: str) -> list[tuple[RunConfig, dict[str, Any]]]:
    """(run config, chain overrides) of every Table 1 run the profile chains (Plan.chain)."""
    out = []
    for row, seeds in planned_rows("table1", profile):
        for seed in seeds:
            cfg = row_config(row, profile, seed, table="table1")
            chain = row_chain(profile, row.label, cfg)
            if chain is not None:
                out.append((cfg, chain))
    return out


def _chain_job(cfg: RunConfig, chain: dict[str, Any]) -> tuple[str, float]:
    """One chain in a worker process of `prepare_runs` → (chain folder, seconds)."""
    start = time.perf_counter()
    rd = run_dir(cfg)
    return str(run_chain(chain_config(rd, **chain), rd, progress=False)), time.perf_counter() - start


def _run_job(cfg: RunConfig, stages: tuple[str, ...]) -> tuple[str, float]:
    """One run in a worker process of `prepare_runs` → (run folder, seconds)."""
    start = time.perf_counter()
    return str(run_all(cfg, stages=stages, progress=False)), time.perf_counter() - start


def default_workers(profile: str) -> int:
    """How many runs `prepare_runs` trains at once: the cores over the profile's threads on a
    CPU profile (1 on a GPU profile, where runs share the device, and where the profile leaves
    the threads to torch, which takes every core)."""
    cfg = _load_profile(profile)
    if cfg.device not in ("cpu", "auto") or (cfg.device == "auto" and _cuda_available()) or not cfg.threads:
        return 1
    return max(1, (os.cpu_count() or 1) // max(1, cfg.threads))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def prepare_runs(profile: str, workers: int, log: Any = print) -> list[Path]:
    """Run (or reuse) every run of `profile_runs(profile)` in `workers` processes at once, before
    the notebooks, which then find them finished (the same folders: nothing depends on which
    process ran what, since each run sets its own seed and the profile fixes its thread count).

    On 2 cores two 1-thread runs side by side do ~1.3× the work of one 2-thread run. The data
    are prepared once first (SynthAerial generation, the image-level label caches), so workers
    never write them concurrently. A failed run stops it with a one-line error naming its folder.
    Then the chains of Plan.chain (pseudo-masks and DeepLab of Table 1's runs), the same way.
    """
    jobs = [(cfg, stages) for cfg, stages in profile_runs(profile)
            if pending_stages(cfg, run_dir(cfg), stages)]
    done = _pool(profile, _run_job, jobs, workers, log, "run", "runs") if jobs else []
    chains = [(cfg, chain) for cfg, chain in profile_chains(profile) if not _chain_finished(cfg, chain)]
    if chains:  # after every classifier run is done: each chain needs its run's classifier and CAMs
        done += _pool(profile, _chain_job, chains, workers, log, "chain",
                      "chains (pseudo-masks and DeepLab)")
    return done


def _chain_finished(cfg: RunConfig, chain: dict[str, Any]) -> bool:
    """True when every stage of a run's chain has its marker (False when the run is not done)."""
    rd = run_dir(cfg)
    if not RunFolder(rd).config.is_file():
        return False
    cd = chain_dir(chain_config(rd, **chain), rd)
    return all(stage_done(cd, s) for s in CHAIN_STAGES)


def _pool(profile: str, fn: Any, jobs: list[tuple[RunConfig, Any]], workers: int, log: Any,
          noun: str, what: str) -> list[Path]:
    """fn(cfg, extra) for each job in `workers` spawned processes; a failure stops all with one
    line naming the run folder. The log counts `what` (plural) one `noun` at a time: a "run" by its
    folder's name, anything else (a chain) by its last three path parts."""
    seen: set[tuple[Any, ...]] = set()
    for cfg, _ in jobs:  # generate / label each dataset in this process first
        key = (cfg.data.dataset, cfg.data.root, cfg.data.max_train, cfg.data.max_val)
        if key not in seen:
            seen.add(key)
            for split in (cfg.data.train_split, cfg.data.val_split):
                open_split(cfg, split, progress=False)
    log(f"[{profile}] {len(jobs)} {what} in {workers} processes of {jobs[0][0].threads} thread(s)")
    start, done = time.perf_counter(), []
    ctx = multiprocessing.get_context("spawn")
    with process_pool(workers, ctx) as pool:
        futures = {pool.submit(fn, cfg, extra): run_dir(cfg) for cfg, extra in jobs}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                exc = fut.exception()
                if exc is not None:
                    for other in pending:
                        other.cancel()
                    message = str(exc) if isinstance(exc, CismError) else f"{type(exc).__name__}: {exc}"
                    raise CismError(f"{futures[fut]}: {message}") from exc
                folder, seconds = fut.result()
                done.append(Path(folder))
                shown = Path(folder).name if noun == "run" else "/".join(Path(folder).parts[-3:])
                log(f"[{profile}] {noun} {len(done)}/{len(jobs)} {shown} in {seconds / 60:.1f} min "
                    f"({(time.perf_counter() - start) / 60:.1f} min so far)")
    return done


def prefer_gpu(cfg: RunConfig) -> RunConfig:
    """The config on the GPU when there is one (the profile's device otherwise)."""
    import torch

    return replace(cfg, device="cuda") if torch.cuda.is_available() else cfg

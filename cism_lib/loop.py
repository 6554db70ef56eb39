"""One seeded training loop, for the classifier (engine.py) and DeepLab (segment.py).

What both trainings share lives here once: the poly schedule, each epoch's seed and batch order
(fixed by the seed and the epoch alone, so a resumed run repeats an interrupted epoch exactly),
the optimisation step, and after every epoch the caller's checkpoint and a JSON-lines log
rewritten from the whole history (log and checkpoint never disagree). What differs is passed
in: the loss of a batch, the record of an epoch and how a checkpoint is written.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from cism_lib.runtime import DistInfo, progress_bar, write_text_atomic

# A batch's losses (fp32 scalars, "total" the one that is minimised); the step backpropagates it.
StepLoss = Callable[[dict[str, Any]], dict[str, torch.Tensor]]


def poly_scheduler(opt: torch.optim.Optimizer, total_steps: int, power: float = 0.9):
    """Polynomial decay lr = lr0 * (1 - step/total)^power over all steps, via LambdaLR (the lr
    after the last step stays above 0; no step uses it)."""
    total = max(1, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (1 - min(s, total - 1) / total) ** power)


def epoch_loader(dataset: Dataset, batch_size: int, seed: int, epoch: int, workers: int = 0,
                 dist: DistInfo | None = None) -> DataLoader:
    """A shuffled loader whose order depends only on (seed, epoch); the incomplete last batch is
    dropped unless the data are less than one batch. Under DDP a DistributedSampler splits the
    order between ranks. A dataset with `set_epoch` is told the epoch first."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    if dist is not None and dist.enabled:
        sampler = DistributedSampler(dataset, dist.world_size, dist.rank, shuffle=True, seed=seed, drop_last=True)
        sampler.set_epoch(epoch)
        return DataLoader(dataset, batch_size, sampler=sampler, num_workers=workers, drop_last=True,
                          persistent_workers=False)
    gen = torch.Generator().manual_seed(seed * 1000 + epoch)
    return DataLoader(dataset, batch_size, shuffle=True, generator=gen, num_workers=workers,
                      drop_last=len(dataset) >= batch_size, persistent_workers=False)


@dataclass
class Epoch:
    """What one pass over the loader measured: each loss's mean over the steps, the steps, the
    wall time and the part of it spent waiting for the loader."""

    losses: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    data_s: float = 0.0


def run_epoch(model: nn.Module, loader: Iterable, step_loss: StepLoss, opt: torch.optim.Optimizer, sched: Any,
              n_steps: int | None = None, progress: bool = True, desc: str = "train",
              frozen: Sequence[nn.Module] = ()) -> Epoch:
    """One pass (at most `n_steps` batches): loss, backward, optimiser and schedule step per batch.
    The model trains in train mode, the `frozen` modules (models.backbones.freeze) in eval mode."""
    model.train()
    for module in frozen:
        module.eval()
    sums: dict[str, float] = {}
    steps, data_s, t0 = 0, 0.0, time.perf_counter()
    total = n_steps if n_steps is not None else len(loader)  # type: ignore[arg-type]
    with progress_bar(total=total, desc=desc, leave=False, disable=not progress) as bar:
        t_wait = time.perf_counter()
        for batch in loader:
            if n_steps is not None and steps >= n_steps:
                break
            data_s += time.perf_counter() - t_wait
            losses = step_loss(batch)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            opt.step()
            sched.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(losses['total'].detach()):.4f}")
            t_wait = time.perf_counter()
    return Epoch({k: v / max(1, steps) for k, v in sums.items()}, steps, time.perf_counter() - t0, data_s)


def fit(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, step_loss: StepLoss,
        loader_for: Callable[[int], Iterable], *, epochs: int, seed: int, history: list[dict],
        record: Callable[[int, Epoch], dict], checkpoint: Callable[[list[dict]], None], log: Path,
        n_steps: int | None = None, progress: bool = True, desc: str = "train",
        frozen: Sequence[nn.Module] = (), writer: bool = True,
        after_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Train from epoch len(history) (0-based; the history a checkpoint carried) to `epochs`.

    Each epoch is seeded (seed * 7919 + epoch: dropout, gates and augmentations) before its
    loader (loader_for(epoch)) is made; `record(epoch, Epoch)` turns the pass into the epoch's
    record. The writer process (rank 0 under DDP) then calls `checkpoint(history)`, rewrites
    the JSON-lines `log` and calls `after_epoch(record)`. Returns the whole history.
    """
    for epoch in range(len(history), epochs):
        torch.manual_seed(seed * 7919 + epoch)
        loader = loader_for(epoch)
        history.append(record(epoch, run_epoch(model, loader, step_loss, opt, sched, n_steps, progress,
                                               desc.format(epoch=epoch + 1, epochs=epochs), frozen)))
        if writer:
            checkpoint(history)
            write_text_atomic(log, "".join(json.dumps(r) + "\n" for r in history))
            if after_epoch:
                after_epoch(history[-1])
    return history


__all__ = ["Epoch", "StepLoss", "epoch_loader", "fit", "poly_scheduler", "run_epoch"]

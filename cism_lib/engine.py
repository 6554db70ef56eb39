"""The classifier's training (loop.fit): its optimiser, losses and λ schedule, AMP, DDP via torchrun,
per-epoch checkpoints with the generator state, learning-curve snapshots, resume."""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from cism_lib.config import LOSSES, RunConfig, TrainConfig, matches_stored, to_dict
from cism_lib.errors import CheckpointError, ConfigError
from cism_lib.loop import Epoch, epoch_loader, fit, poly_scheduler
from cism_lib.runfolder import CHECKPOINT as CKPT_NAME
from cism_lib.runfolder import TRAIN_LOG, snapshot_name
from cism_lib.runtime import (DistInfo, Precision, atomic_path, dist_info, load_checkpoint_file, precision_for,
                              setup_cpu)

def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (the paper's) or SGD over the model's parameter groups (backbone at a lower LR)."""
    core = model.module if hasattr(model, "module") else model
    if hasattr(core, "param_groups"):
        groups = core.param_groups(cfg.lr, cfg.backbone_lr_mult)
    else:
        groups = [{"params": [p for p in core.parameters() if p.requires_grad], "lr": cfg.lr}]
    for g in groups:
        g["initial_lr"] = g["lr"]
    fused = True if cfg.fused_optimizer else None
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, fused=fused)
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def steps_per_epoch(n_items: int, cfg: TrainConfig, dist: DistInfo) -> int:
    """Optimizer steps in one epoch (drop_last), capped by max_steps."""
    per_rank = n_items // dist.world_size
    steps = max(1, per_rank // cfg.batch_size)
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    """Move the tensors of a batch to the device (4-D image batches in channels_last if asked)."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if channels_last and v.ndim == 4:
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def save_checkpoint(path: Path, model: nn.Module, opt, sched, epoch: int, cfg: RunConfig,
                    history: list[dict]) -> None:
    """A plain-dict checkpoint (weights, optimizer, scheduler, epoch, config) written atomically."""
    core = model.module if hasattr(model, "module") else model
    # The generator as this epoch left it: what the stages after training draw from, in any process
    state = {"model": core.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
             "epoch": epoch, "config": to_dict(cfg), "history": history, "rng": torch.get_rng_state()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


RETRAIN = "delete it and run the same command again: the classifier trains again from its first epoch"


def load_checkpoint(path: Path, cfg: RunConfig | None = None) -> dict[str, Any]:
    """Load a checkpoint; a damaged file or one made for another model config is a clear error."""
    state = load_checkpoint_file(path, "classifier checkpoint", RETRAIN, "train the classifier first (cism train CONFIG)")
    if cfg is not None and not matches_stored(state.get("config", {}).get("model"), cfg.model):
        raise CheckpointError(f"{path}: checkpoint was trained with a different model config "
                              f"({state.get('config', {}).get('model')}); use another run folder "
                              "or delete the checkpoint")
    return state


def fp32_outputs(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model outputs cast to fp32, so every loss is computed in full precision."""
    return {k: v.float() if torch.is_floating_point(v) else v for k, v in out.items()}


def _load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): context for a measured time."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def gradient_probe(model: nn.Module, batch: dict[str, Any], loss_fn: Callable,
                   precision: Precision) -> dict[str, float]:
    """Each loss's gradient on the backbone for one batch: its norm and its cosine with L_ml's.

    `grad_norm_<loss>` (unweighted by λ) and `grad_cos_<loss>` (cosine with the L_ml gradient);
    what hypothesis 2 of docs/results.md asks (does the auxiliary direction swamp L_ml's?). The
    probe leaves training as it was: BatchNorm buffers and the torch RNG (the gate of Eq. 5) are
    restored, and no parameter gradient is kept.
    """
    core = model.module if hasattr(model, "module") else model
    params = [p for p in core.backbone.parameters() if p.requires_grad]
    rng, buffers = torch.get_rng_state(), {k: b.clone() for k, b in core.named_buffers()}
    try:
        with precision.autocast():
            out = core(batch["image_q"], batch.get("image_r"))
        losses = {k: v for k, v in loss_fn(fp32_outputs(out), batch).items() if k in LOSSES}
        flat = {}
        for k, v in losses.items():
            grads = torch.autograd.grad(v, params, retain_graph=True, allow_unused=True)
            flat[k] = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                                 for g, p in zip(grads, params)])
    finally:
        torch.set_rng_state(rng)
        with torch.no_grad():
            for k, b in core.named_buffers():
                b.copy_(buffers[k])
    ml = flat["ml"]
    record = {}
    for k, g in flat.items():
        record[f"grad_norm_{k}"] = float(g.norm())
        if k != "ml":
            record[f"grad_cos_{k}"] = float(torch.nn.functional.cosine_similarity(g, ml, dim=0))
    return record


def balanced_ratio(losses: dict[str, torch.Tensor], model: nn.Module, eps: float = 1e-12) -> float:
    """‖∇_backbone L_ml‖ / ‖∇_backbone Σ auxiliary losses‖ on the graph of `losses` (kept for the
    training step's own backward); 1 when there is no auxiliary loss or it sends no gradient."""
    params = [p for p in model.backbone.parameters() if p.requires_grad]
    aux = [v for k, v in losses.items() if k in LOSSES and k != "ml"]
    if not aux:
        return 1.0

    def norm(value: torch.Tensor) -> float:
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        return math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads if g is not None))

    g_aux = norm(torch.stack(aux).sum())
    return norm(losses["ml"]) / g_aux if g_aux > eps else 1.0


def _finite_or_raise(stats: dict[str, float], epoch: int) -> None:
    """Stop with advice when the loss diverged."""
    if not math.isfinite(stats.get("total", 0.0)):
        raise FloatingPointError(f"loss is {stats['total']} at epoch {epoch}; lower train.lr "
                                 "or disable train.amp")


def _wrap_distributed(model: nn.Module, device: torch.device, dist: DistInfo, sync_bn: bool) -> nn.Module:
    """Initialise the process group (nccl on CUDA, gloo on CPU) and wrap the model in DDP."""
    import torch.distributed as tdist

    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def _resume(path: Path, model: nn.Module, opt, sched, cfg: RunConfig) -> list[dict]:
    """Restore state from the last epoch checkpoint; returns its history (one record per epoch done)."""
    if not path.exists():
        return []
    state = load_checkpoint(path, cfg)
    core = model.module if hasattr(model, "module") else model
    core.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    if "rng" in state:  # the generator as the last epoch left it, for the stages after training
        torch.set_rng_state(state["rng"])
    history = list(state.get("history", []))
    if len(history) != int(state["epoch"]) + 1:
        raise CheckpointError(f"{path}: holds {len(history)} epoch records after epoch {int(state['epoch']) + 1}; "
                              f"{RETRAIN}")
    return history


def train_classifier(cfg: RunConfig, dataset: Dataset, num_classes: int, out_dir: str | Path,
                     resume: bool = True, progress: bool = True,
                     on_epoch: Callable[[dict], None] | None = None) -> tuple[nn.Module, list[dict]]:
    """Train the classifier on a pair dataset with loop.fit; writes checkpoint.pt and log.jsonl
    in out_dir. Returns (the model in eval mode, one record per epoch)."""
    from cism_lib.losses import total_loss, warmup_scale
    from cism_lib.models import build_model
    from cism_lib.models.backbones import freeze, set_depthwise_grad
    from cism_lib.runtime import resolve_device

    dist = dist_info()
    device = resolve_device(cfg.device, dist.local_rank)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    setup_cpu(cfg.threads)
    precision = precision_for(device, cfg.train.amp, cfg.train.channels_last)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, num_classes)
    set_depthwise_grad(model, cfg.train.depthwise_grad)
    if cfg.train.init_from:
        init_from_checkpoint(model, Path(cfg.train.init_from))
    frozen = freeze(model.backbone, cfg.train.frozen_stages, cfg.train.freeze_bn)
    model = precision.model(model.to(device))
    if dist.enabled:
        model = _wrap_distributed(model, device, dist, cfg.train.sync_bn)
    n_steps = steps_per_epoch(len(dataset), cfg.train, dist)
    opt = build_optimizer(model, cfg.train)
    sched = poly_scheduler(opt, n_steps * cfg.train.epochs, cfg.train.poly_power)
    ckpt = out_dir / CKPT_NAME
    history = _resume(ckpt, model, opt, sched, cfg) if resume else []

    total_steps = n_steps * cfg.train.epochs
    every = cfg.train.lam_balance_every
    if every and cfg.model.lam_learnable:
        raise ConfigError("train.lam_balance_every and model.lam_learnable both set λ; choose one")
    balance = {"ratio": 1.0}  # the last measured ‖∇L_ml‖ / ‖∇L_aux‖ (resumes start from 1 until measured)
    core = model.module if hasattr(model, "module") else model

    def loss_fn(out, batch):
        # sched.last_epoch counts the optimiser steps taken so far (resumes included)
        step = sched.last_epoch
        off = step < (cfg.train.aux_from_epoch - 1) * n_steps  # the CAM trains alone first
        scale = 0.0 if off else warmup_scale(step, total_steps, cfg.train.aux_warmup)
        if not every:
            return total_loss(out, batch, cfg.model, aux_scale=scale)
        if step % every == 0 and torch.is_grad_enabled():
            balance["ratio"] = balanced_ratio(total_loss(out, batch, cfg.model), core)
        losses = total_loss(out, batch, cfg.model, aux_scale=scale * balance["ratio"])
        return {**losses, "lam_ratio": torch.tensor(balance["ratio"])}

    seen = {"images": 0, "last": None}  # this epoch's images, and its last batch for the probe

    def step_loss(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        batch = seen["last"] = to_device(batch, device, precision.channels_last)
        seen["images"] += batch["image_q"].shape[0] * (2 if "image_r" in batch else 1)
        with precision.autocast():
            out = model(batch["image_q"], batch.get("image_r"))
        return loss_fn(fp32_outputs(out), batch)

    def record(epoch: int, done: Epoch) -> dict:
        _finite_or_raise(done.losses, epoch)
        stats = dict(done.losses)
        if cfg.train.grad_probe and seen["images"]:
            stats.update(gradient_probe(model, seen["last"], loss_fn, precision))  # the epoch's last batch
        stats.update(images_per_s=seen["images"] / max(done.seconds, 1e-9), seconds=done.seconds, data_s=done.data_s,
                     threads=torch.get_num_threads(), load_avg_1min=_load_average(), **precision.record(),
                     depthwise_grad=cfg.train.depthwise_grad)
        seen["images"] = 0
        return {"epoch": epoch, "steps": n_steps * (epoch + 1), "lr": sched.get_last_lr()[0], **stats}

    def checkpoint(history: list[dict]) -> None:
        epoch = len(history) - 1
        save_checkpoint(ckpt, model, opt, sched, epoch, cfg, history)
        if epoch + 1 in cfg.train.curve_epochs:  # weights only: the curve never resumes from it
            with atomic_path(out_dir / snapshot_name(epoch + 1)) as tmp:
                torch.save({"model": core.state_dict(), "epoch": epoch, "config": to_dict(cfg)}, tmp)

    try:
        history = fit(model, opt, sched, step_loss,
                      lambda epoch: epoch_loader(dataset, cfg.train.batch_size, cfg.train.seed, epoch,
                                                 cfg.data.workers, dist),
                      epochs=cfg.train.epochs, seed=cfg.train.seed, history=history, record=record,
                      checkpoint=checkpoint, log=out_dir / TRAIN_LOG, n_steps=n_steps,
                      progress=progress and dist.is_main, frozen=frozen, writer=dist.is_main, after_epoch=on_epoch)
    except torch.cuda.OutOfMemoryError:
        raise RuntimeError(f"CUDA out of memory at batch_size={cfg.train.batch_size}, crop "
                           f"{cfg.data.crop_size}: lower train.batch_size or data.crop_size, "
                           "or enable train.amp") from None
    return core.eval(), history


def init_from_checkpoint(model: nn.Module, path: Path) -> list[str]:
    """Copy the weights of a classifier checkpoint into the layers `model` shares with it (same
    name and shape, e.g. a CISM net from a trained CAM or CIAN); returns the names copied."""
    state = load_checkpoint(path)["model"]
    own = model.state_dict()
    shared = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not any(k.startswith("classifier.") for k in shared):
        raise CheckpointError(f"{path}: shares no classifier weights with this model; "
                              "train.init_from needs a checkpoint of the same backbone")
    model.load_state_dict(shared, strict=False)
    return sorted(shared)


def load_classifier(cfg: RunConfig, num_classes: int, path: str | Path, device: torch.device) -> nn.Module:
    """Build the model of `cfg` and load trained weights from a checkpoint."""
    from cism_lib.config import replace
    from cism_lib.models import build_model

    state = load_checkpoint(Path(path), cfg)
    model = build_model(replace(cfg.model, weights=None), num_classes)  # weights come from the file
    model.load_state_dict(state["model"])
    return model.to(device).eval()

"""Where the time of one classifier training step goes: torch.profiler over a config's step.

    python -m cism_lib.tools.stepprofile configs/isaid512.yaml --model.method cism --threads 2

Builds the classifier of a config (profile YAML + the `cism train` flags), feeds it one fixed random
pair batch at the config's crop size and batch size, and profiles `--steps` training steps
(forward under the config's precision policy, fp32 losses, backward, optimizer step) after one
warm-up step. Prints the median step time, the share of each phase (forward, loss, backward,
optimizer), the forward time of each top-level module of the classifier (backbone, CIAN
affinity, PV, PIE, ...), and the top operators by self CPU time, as Markdown. Random inputs:
the data pipeline is not in it (`make bench --with-data` measures that).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

PHASES = ("forward", "loss", "backward", "optimizer")


def _module_timers(model: nn.Module) -> tuple[dict[str, float], list[Any]]:
    """Forward wall time per top-level child of `model`, summed over calls (hooks to remove)."""
    totals: dict[str, float] = {}
    started: dict[str, list[float]] = {}
    handles = []
    for name, child in model.named_children():
        def pre(_m: nn.Module, _i: Any, name: str = name) -> None:
            started.setdefault(name, []).append(time.perf_counter())

        def post(_m: nn.Module, _i: Any, _o: Any, name: str = name) -> None:
            totals[name] = totals.get(name, 0.0) + time.perf_counter() - started[name].pop()

        handles += [child.register_forward_pre_hook(pre), child.register_forward_hook(post)]
    return totals, handles


def profile_step(cfg: Any, steps: int = 2, top: int = 20, shapes: bool = False) -> dict[str, Any]:
    """Median step seconds, seconds per phase and per module (per step), and the top-`top`
    operators by self CPU time (per step) of `cfg`'s classifier training step on random pairs;
    `shapes`: operators told apart by their input shapes too."""
    from cism_lib.tools.bench import random_pair_batch
    from cism_lib.engine import build_optimizer, fp32_outputs, to_device
    from cism_lib.losses import total_loss
    from cism_lib.models import build_model
    from cism_lib.models.backbones import freeze, set_depthwise_grad
    from cism_lib.runtime import precision_for, setup_cpu

    setup_cpu(cfg.threads)
    device = torch.device("cpu" if cfg.device == "auto" and not torch.cuda.is_available()
                          else ("cuda" if cfg.device == "auto" else cfg.device))
    torch.manual_seed(cfg.train.seed)
    precision = precision_for(device, cfg.train.amp, cfg.train.channels_last)
    model = precision.model(build_model(cfg.model, 15).to(device)).train()
    set_depthwise_grad(model, cfg.train.depthwise_grad)
    freeze(model.backbone, cfg.train.frozen_stages, cfg.train.freeze_bn)  # as engine.train_classifier
    opt = build_optimizer(model, cfg.train)
    batch = to_device(random_pair_batch(cfg.train.batch_size, cfg.data.crop_size, seed=cfg.train.seed),
                      device, precision.channels_last)
    phases = {p: 0.0 for p in PHASES}
    modules, handles = _module_timers(model)

    def step(record: bool) -> float:
        marks = [time.perf_counter()]
        with precision.autocast():
            out = model(batch["image_q"], batch["image_r"])
        marks.append(time.perf_counter())
        loss = total_loss(fp32_outputs(out), batch, cfg.model)["total"]
        marks.append(time.perf_counter())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(time.perf_counter())
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        marks.append(time.perf_counter())
        if record:
            for p, a, b in zip(PHASES, marks, marks[1:]):
                phases[p] += b - a
        return marks[-1] - marks[0]

    step(record=False)
    modules.clear()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=shapes) as prof:
        times = [step(record=True) for _ in range(steps)]
    for h in handles:
        h.remove()
    ops = sorted(prof.key_averages(group_by_input_shape=shapes), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "step_s": statistics.median(times), "threads": torch.get_num_threads(), "precision": precision.name,
        "phases": {p: s / steps for p, s in phases.items()},
        "modules": {m: s / steps for m, s in sorted(modules.items(), key=lambda kv: -kv[1])},
        "ops": [(e.key + (f" {e.input_shapes}" if shapes else ""), e.self_cpu_time_total / 1e6 / steps,
                 e.count // steps) for e in ops],
    }


def depthwise_layers(cfg: Any, repeats: int = 3) -> list[dict[str, Any]]:
    """Backward seconds (median of `repeats`, both gradients) of each depthwise convolution of the
    config's Lite0 backbone, with PyTorch's kernels and with _DepthwiseConvGrad, at the shapes a
    training step at the config's crop and batch gives it (2 × batch images), in its precision."""
    import torch.nn.functional as F

    from cism_lib.models.backbones import _DepthwiseConvGrad, build_backbone, same_padding
    from cism_lib.runtime import precision_for, setup_cpu

    setup_cpu(cfg.threads)
    precision = precision_for(torch.device("cpu"), cfg.train.amp, cfg.train.channels_last)
    net = build_backbone("efficientnet_lite0", None, cfg.model.output_stride)
    shapes: list[tuple[Any, torch.Size]] = []
    hooks = [b._depthwise_conv.register_forward_pre_hook(lambda m, i: shapes.append((m, i[0].shape)))
             for b in net.body.net._blocks]
    with torch.no_grad():
        net(torch.zeros(1, 3, cfg.data.crop_size, cfg.data.crop_size))
    for h in hooks:
        h.remove()
    dtype = precision.dtype or torch.float32
    fmt = torch.channels_last if precision.channels_last else torch.contiguous_format
    rows = []
    for conv, shape in shapes:
        k, s, d = conv.weight.shape[-1], conv.stride[0], conv.dilation[0]
        (top, bottom), (left, right) = same_padding(shape[-2], k, s, d), same_padding(shape[-1], k, s, d)
        pads = (left, right, top, bottom)
        x = torch.randn(2 * cfg.train.batch_size, *shape[1:], dtype=dtype).contiguous(memory_format=fmt)
        x.requires_grad_(True)
        w = conv.weight.detach().to(dtype).requires_grad_(True)
        outputs = {"aten": F.conv2d(F.pad(x, pads), w, None, s, 0, d, shape[1]),
                   "conv": _DepthwiseConvGrad.apply(x, w, pads, s, d)}
        grad = torch.randn_like(outputs["aten"])
        row: dict[str, Any] = {"channels": int(shape[1]), "size": int(shape[-1]), "kernel": k, "stride": s,
                               "dilation": d}
        for name, y in outputs.items():
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                torch.autograd.grad(y, (x, w), grad, retain_graph=True)
                times.append(time.perf_counter() - t0)
            row[name] = statistics.median(times)
        rows.append(row)
    return rows


def render_layers(rows: Sequence[dict[str, Any]]) -> str:
    """depthwise_layers as a Markdown table with the aten ÷ conv ratio."""
    lines = ["| channels | size | kernel | stride | dilation | aten backward s | conv backward s | aten ÷ conv |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['channels']} | {r['size']} | {r['kernel']} | {r['stride']} | {r['dilation']} | "
              f"{r['aten']:.3f} | {r['conv']:.3f} | {r['aten'] / r['conv']:.1f} |" for r in rows]
    total_a, total_c = sum(r["aten"] for r in rows), sum(r["conv"] for r in rows)
    lines.append(f"| all | | | | | {total_a:.3f} | {total_c:.3f} | {total_a / total_c:.1f} |")
    return "\n".join(lines)


def render(result: dict[str, Any]) -> str:
    """The profile as Markdown: the step, its phases, the modules' forward and the top operators."""
    step = result["step_s"]
    lines = [f"median step {step:.3f} s ({result['precision']}, {result['threads']} threads; "
             "the profiler's own overhead included)", "",
             "| phase | s / step | share |", "|---|---:|---:|"]
    lines += [f"| {p} | {s:.3f} | {100 * s / step:.0f} % |" for p, s in result["phases"].items()]
    lines += ["", "| module (forward only) | s / step | share of the step |", "|---|---:|---:|"]
    lines += [f"| {m} | {s:.3f} | {100 * s / step:.0f} % |" for m, s in result["modules"].items()]
    lines += ["", "| operator (self CPU) | s / step | calls / step |", "|---|---:|---:|"]
    lines += [f"| `{k}` | {s:.3f} | {n} |" for k, s, n in result["ops"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from cism_lib.cli import add_config_flags, config_from_args

    p = argparse.ArgumentParser(prog="python -m cism_lib.tools.stepprofile", description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?", help="profile YAML (default: the library defaults)")
    p.add_argument("--steps", type=int, default=2, help="profiled steps after one warm-up step")
    p.add_argument("--top", type=int, default=20, help="operators listed")
    p.add_argument("--shapes", action="store_true", help="tell operators apart by input shapes")
    p.add_argument("--depthwise-layers", action="store_true",
                   help="instead: each Lite0 depthwise convolution's backward, PyTorch's vs train.depthwise_grad conv")
    add_config_flags(p)
    args = p.parse_args(argv)
    if args.depthwise_layers:
        rows = depthwise_layers(config_from_args(args))
        print(render_layers(rows))
        return {"layers": rows}
    result = profile_step(config_from_args(args), args.steps, args.top, args.shapes)
    print(render(result))
    return result


if __name__ == "__main__":
    main()

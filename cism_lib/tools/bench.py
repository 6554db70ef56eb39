"""`make bench`: training, CAM, CRF and SynthAerial throughput side by side → results/bench.json + docs.

Every number of one run comes from the same process on the same device, so the ratios between
rows (CISM/CAM images/s, pool/single CRF speed-up) are meaningful even where the absolute times
are not. Run `python -m cism_lib.tools.bench --help` for the options; docs/benchmarks.md explains them.
Longer than ~500 lines because each measurement (training steps per backbone, method and
precision, CAMs, the CRF pool, SynthAerial, PIE's share, FLOPs) is timed here, beside the others,
and rendered into one table; none of it is library code.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cism_lib.config import CrfConfig, ModelConfig, RunConfig
from cism_lib.config import replace as cfg_replace
from cism_lib.flags import add_dataclass_flags

METHODS = ("cam", "cian", "cism")
BACKBONES = ("resnet50", "efficientnet_lite0")
NUM_CLASSES = 15  # iSAID foreground classes
TRAIN_FLOPS_FACTOR = 3.0  # forward + backward ≈ 3 × forward (backward = grads of inputs and weights)
TARGETS = {"cism_over_cam": 0.8, "crf_pool_speedup": 1.8, "gpu_images_per_s": 500.0}
DEFAULT_JSON = Path("results/bench.json")
DEFAULT_DOC = Path("docs/benchmarks.md")


@dataclass(frozen=True)
class BenchSettings:
    """What one bench run measures, and at which sizes (each comment is the flag's help)."""

    device: str = "cpu"                              # cpu, cuda or cuda:N
    size: int = 256                                  # image side for training, CAM and CRF measurements
    batch: int = 8                                   # pairs per training step (images/s counts both of a pair)
    steps: int = 5                                   # timed steps per measurement (median reported)
    warmup: int = 2                                  # untimed warm-up steps before them
    backbones: tuple[str, ...] = BACKBONES           # backbones to train
    methods: tuple[str, ...] = METHODS               # methods to train (cam cian cism)
    with_data: bool = False                          # feed training from SynthAerial pairs + a DataLoader
    workers: int = 0                                 # DataLoader workers with --with-data
    cam_images: int = 8                              # images per multi-scale CAM call
    cam_scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)  # CAM scales (flip is always on)
    crf_images: int = 64                             # pseudo-masks made by each of single / pool
    crf_size: int = 0                                # CRF image side (0 = --size)
    crf_workers: int = 0                             # CRF pool size (0 = all cores)
    synth_images: int = 16                           # SynthAerial scenes rendered
    synth_size: int = 256                            # SynthAerial image side
    pie_size: int = 512                              # image side of the PIE-similarity share measurement
    pie_batch: int = 16                              # pairs per step there
    pie_backbone: str = "resnet50"                   # backbone there
    flops_size: int = 512                            # image side of the FLOPs/MFU table
    peak_tflops: float | None = None                 # device peak TFLOP/s for MFU (H100/H200 dense bf16: 989)
    threads: int = 0                                 # torch CPU threads (0 = default; 1 on a loaded machine)
    precisions: tuple[str, ...] = ("fp32", "bf16")   # measured side by side (bf16 = + channels_last)
    seg_batch: int = 4                               # images per DeepLab training step
    depthwise_grad: str = "conv"                     # Lite0's depthwise backward on CPU: conv or aten
    compile: bool = False                            # add one torch.compile row (first backbone, cam, bf16)
    quick: bool = False                              # tiny run (resnet18, 64², 1 step) for tests
    seed: int = 0                                    # seed of the random inputs


QUICK = {"size": 64, "batch": 1, "steps": 1, "warmup": 1, "backbones": ("resnet18",),
         "cam_images": 1, "crf_images": 2, "crf_workers": 2, "synth_images": 2, "synth_size": 64,
         "pie_size": 64, "pie_batch": 1, "pie_backbone": "resnet18", "flops_size": 64, "threads": 1,
         "seg_batch": 1, "compile": False, "quick": True}

# ----------------------------------------------------------------------------- helpers
def resolve(settings: BenchSettings) -> torch.device:
    """The torch device of the settings (CUDA must exist when asked for)."""
    from cism_lib.runtime import resolve_device

    return resolve_device(settings.device)


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model} ({os.cpu_count()} cores)"


def _sync(device: torch.device) -> None:
    """Wait for queued CUDA work so wall-clock times are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], warmup: int, steps: int, device: torch.device) -> list[float]:
    """Seconds of each of `steps` calls of fn after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _rss_bytes() -> int:
    """Resident set size of this process (psutil; else the peak so far from getrusage)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def _release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc malloc_trim), so RSS is
    a fair baseline: otherwise memory freed by an earlier, larger model is reused unseen."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if platform.system() == "Linux" and name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (e.g. musl): keep the plain baseline
            pass


class PeakMemory:
    """Peak memory above the level at entry: CUDA max_memory_allocated, or sampled CPU RSS."""

    def __init__(self, device: torch.device, interval_s: float = 0.005) -> None:
        self.device, self.interval = device, interval_s
        self.metric = "cuda_max_memory_allocated" if device.type == "cuda" else "cpu_rss_peak_delta"
        self.base = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        """Sample RSS until stopped."""
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            _release_free_memory()
            self.base = self.peak = _rss_bytes()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes())

    @property
    def mib(self) -> float:
        """Peak minus entry level, MiB."""
        return max(0, self.peak - self.base) / 2**20


def mfu(images_per_s: float, fwd_flops_per_image: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: images/s × 3 × forward FLOPs/image ÷ peak FLOP/s."""
    return images_per_s * TRAIN_FLOPS_FACTOR * fwd_flops_per_image / (peak_tflops * 1e12)


def forward_flops(backbone: str, method: str, size: int, num_classes: int = NUM_CLASSES) -> float:
    """Forward FLOPs per image of one training pair (FlopCounterMode on the meta device)."""
    from torch.utils.flop_counter import FlopCounterMode

    from cism_lib.models import build_model

    with torch.device("meta"):
        model = build_model(ModelConfig(method=method, backbone=backbone, weights=None), num_classes)
        x = torch.empty(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    with counter:
        model.train()(x, x)
    return counter.get_total_flops() / 2


# ----------------------------------------------------------------------------- training
def random_pair_batch(batch: int, size: int, num_classes: int = NUM_CLASSES,
                      seed: int = 0) -> dict[str, torch.Tensor]:
    """A pair batch (docs/design.md keys) of random images and labels sharing >= 1 class."""
    g = torch.Generator().manual_seed(seed)
    label_q = (torch.rand(batch, num_classes, generator=g) < 0.2).float()
    label_r = (torch.rand(batch, num_classes, generator=g) < 0.2).float()
    shared = torch.randint(num_classes, (batch,), generator=g)
    label_q[torch.arange(batch), shared] = 1.0
    label_r[torch.arange(batch), shared] = 1.0
    label_co = label_q * label_r
    return {"image_q": torch.randn(batch, 3, size, size, generator=g),
            "image_r": torch.randn(batch, 3, size, size, generator=g),
            "label_q": label_q, "label_r": label_r, "label_co": label_co,
            "label_q_nc": label_q - label_co, "label_r_nc": label_r - label_co}


def pipeline_pairs(settings: BenchSettings, backbone: str, root: Path):
    """The real training pairs (pipeline.pair_dataset) on SynthAerial generated under root."""
    from cism_lib.pipeline import pair_dataset

    n = max(2 * settings.batch, settings.batch * (settings.warmup + settings.steps))
    cfg = cfg_replace(RunConfig(), **{
        "data.root": str(root), "data.synth_train": n, "data.synth_val": 1,
        "data.synth_size": settings.size, "data.crop_size": settings.size,
        "data.workers": settings.workers, "model.backbone": backbone, "model.weights": None,
        "train.batch_size": settings.batch, "train.seed": settings.seed})
    return pair_dataset(cfg, progress=False)


def _batches(settings: BenchSettings, device: torch.device, channels_last: bool,
             dataset: Any = None) -> Iterator[dict[str, Any]]:
    """Endless batches on the device: one fixed random batch, or a DataLoader over `dataset`."""
    from torch.utils.data import DataLoader

    from cism_lib.engine import to_device

    if dataset is None:
        fixed = to_device(random_pair_batch(settings.batch, settings.size, seed=settings.seed),
                          device, channels_last)
        while True:
            yield fixed
    loader = DataLoader(dataset, settings.batch, shuffle=True, drop_last=True,
                        num_workers=settings.workers, persistent_workers=settings.workers > 0,
                        pin_memory=device.type == "cuda")
    while True:
        for batch in loader:
            yield to_device(batch, device, channels_last)


def named_precision(device: torch.device, name: str):
    """The runtime.Precision called `name` on the device: fp32 (contiguous) or bf16 + channels_last."""
    from cism_lib.runtime import Precision

    if name == "fp32":
        return Precision(device.type)
    if name == "bf16":
        return Precision(device.type, torch.bfloat16, channels_last=True)
    raise ValueError(f"unknown precision {name!r}; use fp32 or bf16")


def _new_model(backbone: str, method: str, device: torch.device,
               precision: str = "bf16", depthwise_grad: str = "conv") -> tuple[nn.Module, ModelConfig]:
    """A randomly initialised classifier on the device, in the precision's memory format, its
    Lite0 depthwise convolutions backpropagating as `depthwise_grad` says."""
    from cism_lib.models import build_model
    from cism_lib.models.backbones import set_depthwise_grad

    cfg = ModelConfig(method=method, backbone=backbone, weights=None)
    model = named_precision(device, precision).model(build_model(cfg, NUM_CLASSES).to(device))
    set_depthwise_grad(model, depthwise_grad)
    return model, cfg


def _make_step(settings: BenchSettings, backbone: str, method: str, device: torch.device,
               dataset: Any = None, precision: str = "bf16",
               compile_model: bool = False) -> Callable[[], None]:
    """A closure running one training step (forward under the precision, fp32 total_loss,
    backward, Adam) of a new model, as engine.train_one_epoch does."""
    from cism_lib.config import TrainConfig
    from cism_lib.engine import build_optimizer, fp32_outputs
    from cism_lib.losses import total_loss

    torch.manual_seed(settings.seed)
    prec = named_precision(device, precision)
    model, cfg = _new_model(backbone, method, device, precision, settings.depthwise_grad)
    opt = build_optimizer(model.train(), TrainConfig(batch_size=settings.batch, lr=1e-4))
    forward = torch.compile(model) if compile_model else model
    batches = _batches(settings, device, prec.channels_last, dataset)

    def step() -> None:
        batch = next(batches)
        with prec.autocast():
            out = forward(batch["image_q"], batch["image_r"])
        losses = total_loss(fp32_outputs(out), batch, cfg)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        opt.step()

    return step


def bench_train_group(settings: BenchSettings, backbone: str, methods: Sequence[str],
                      dataset: Any = None, precisions: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Training images/s and peak memory of methods × precisions, timed steps interleaved round-robin.

    Peak memory covers building each model and its warm-up steps (the first step allocates
    the Adam state); timed steps then alternate between every (method, precision), so a change
    in machine load hits all of them alike and their ratios stay fair.
    """
    device = resolve(settings)
    combos = [(m, p) for m in methods for p in (precisions or settings.precisions)]
    steps, mems = {}, {}
    for combo in combos:
        with PeakMemory(device) as mems[combo]:
            steps[combo] = _make_step(settings, backbone, combo[0], device, dataset, combo[1])
            timed(steps[combo], max(1, settings.warmup), 0, device)
    times: dict[tuple[str, str], list[float]] = {c: [] for c in combos}
    for _ in range(settings.steps):
        for combo in combos:
            times[combo] += timed(steps[combo], 0, 1, device)
    rows = []
    for method, prec in combos:
        median = statistics.median(times[method, prec])
        rows.append({"backbone": backbone, "method": method, "precision": prec,
                     "images_per_s": 2 * settings.batch / median, "step_s": median,
                     "step_s_all": times[method, prec], "peak_mem_mib": mems[method, prec].mib,
                     "mem_metric": mems[method, prec].metric, "with_data": dataset is not None})
    return rows


def bench_train(settings: BenchSettings, backbone: str, method: str,
                dataset: Any = None, precision: str | None = None) -> dict[str, Any]:
    """Training step time, images/s (both images of a pair) and peak memory of one method."""
    prec = precision or settings.precisions[-1]
    return bench_train_group(settings, backbone, (method,), dataset, (prec,))[0]


def bench_compile(settings: BenchSettings, backbone: str, method: str = "cam",
                  precision: str = "bf16") -> dict[str, Any]:
    """torch.compile of one classifier: first-step seconds (compilation) and compiled vs eager
    step time, measured interleaved."""
    device = resolve(settings)
    eager = _make_step(settings, backbone, method, device, None, precision)
    compiled = _make_step(settings, backbone, method, device, None, precision, compile_model=True)
    t0 = time.perf_counter()
    compiled()
    _sync(device)
    compile_s = time.perf_counter() - t0
    timed(eager, max(1, settings.warmup), 0, device)
    timed(compiled, max(1, settings.warmup) - 1, 0, device)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(settings.steps):
        times["eager"] += timed(eager, 0, 1, device)
        times["compiled"] += timed(compiled, 0, 1, device)
    e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
    return {"backbone": backbone, "method": method, "precision": precision,
            "first_step_s": compile_s, "eager_step_s": e, "compiled_step_s": c,
            "speedup": e / c, "break_even_steps": compile_s / max(e - c, 1e-9) if e > c else None}


def warm_up(settings: BenchSettings) -> None:
    """One tiny untimed training step, so one-off library start-up lands in no measurement."""
    tiny = dc_replace(settings, size=64, batch=1)
    _make_step(tiny, settings.backbones[0], settings.methods[-1], resolve(settings))()


def add_flops(row: dict[str, Any], size: int, peak_tflops: float | None) -> dict[str, Any]:
    """Forward GFLOPs/image, achieved training TFLOP/s and (with a peak) MFU of a training row."""
    fwd = forward_flops(row["backbone"], row["method"], size)
    row = {**row, "fwd_gflops_per_image": fwd / 1e9,
           "train_tflops_per_s": row["images_per_s"] * TRAIN_FLOPS_FACTOR * fwd / 1e12}
    if peak_tflops:
        row["mfu"] = mfu(row["images_per_s"], fwd, peak_tflops)
    return row


def train_ratios(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per backbone: images/s of each method ÷ CAM's (and CISM ÷ CIAN) at the fastest precision
    measured, and bf16 ÷ fp32 per method (same run, same settings)."""
    out: dict[str, dict[str, float]] = {}
    for bb in dict.fromkeys(r["backbone"] for r in rows):
        mine = [r for r in rows if r["backbone"] == bb]
        precs = list(dict.fromkeys(r.get("precision", "fp32") for r in mine))
        fast = "bf16" if "bf16" in precs else precs[-1]
        by = {r["method"]: r["images_per_s"] for r in mine if r.get("precision", "fp32") == fast}
        pairs = [(m, "cam") for m in by if m != "cam"] + [("cism", "cian")]
        out[bb] = {f"{a}_over_{b}": by[a] / by[b] for a, b in pairs if a in by and b in by}
        both = {(r["method"], r.get("precision", "fp32")): r["images_per_s"] for r in mine}
        out[bb].update({f"{m}_bf16_over_fp32": both[m, "bf16"] / both[m, "fp32"]
                        for m in by if (m, "bf16") in both and (m, "fp32") in both})
    return out


# ----------------------------------------------------------------------------- CAMs, PIE
def bench_cam(settings: BenchSettings, backbone: str, method: str = "cism") -> list[dict[str, Any]]:
    """Multi-scale + flip CAM inference images/s (cam.multiscale_cam), one row per precision,
    calls interleaved."""
    from cism_lib.cam import multiscale_cam

    device = resolve(settings)
    g = torch.Generator().manual_seed(settings.seed)
    images = torch.randn(settings.cam_images, 3, settings.size, settings.size, generator=g).to(device)
    labels = torch.ones(settings.cam_images, NUM_CLASSES, device=device)
    calls = {}
    for prec in settings.precisions:
        model, _ = _new_model(backbone, method, device, prec)
        policy = named_precision(device, prec)

        def call(model=model.eval(), policy=policy) -> None:
            multiscale_cam(model, images, labels, settings.cam_scales, True, precision=policy)
        calls[prec] = call
        timed(call, 1, 0, device)
    times: dict[str, list[float]] = {p: [] for p in calls}
    for _ in range(settings.steps):
        for prec, call in calls.items():
            times[prec] += timed(call, 0, 1, device)
    rows = []
    for prec in calls:
        median = statistics.median(times[prec])
        rows.append({"backbone": backbone, "method": method, "precision": prec,
                     "images_per_s": settings.cam_images / median, "call_s": median,
                     "images_per_call": settings.cam_images, "scales": list(settings.cam_scales),
                     "flip": True})
    return rows


def bench_seg(settings: BenchSettings, backbone: str) -> list[dict[str, Any]]:
    """DeepLab-LargeFOV training step (fwd, fp32 CE, bwd, fused Adam) and single-image inference
    images/s, per precision, interleaved."""
    import torch.nn.functional as F

    from cism_lib.config import SegConfig
    from cism_lib.models.backbones import set_depthwise_grad
    from cism_lib.segment import build_segmenter

    device = resolve(settings)
    g = torch.Generator().manual_seed(settings.seed)
    x = torch.randn(settings.seg_batch, 3, settings.size, settings.size, generator=g).to(device)
    y = torch.randint(NUM_CLASSES + 1, (settings.seg_batch, settings.size, settings.size), generator=g).to(device)
    fns: dict[tuple[str, str], Callable[[], None]] = {}
    for prec in settings.precisions:
        torch.manual_seed(settings.seed)
        policy = named_precision(device, prec)
        model = policy.model(build_segmenter(SegConfig(backbone=backbone, weights=None), NUM_CLASSES + 1).to(device))
        set_depthwise_grad(model, settings.depthwise_grad)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)  # as train.fused_optimizer
        xb = policy.images(x)

        def train(model=model, opt=opt, policy=policy, xb=xb) -> None:
            model.train()
            with policy.autocast():
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        @torch.no_grad()
        def infer(model=model, policy=policy, xb=xb) -> None:
            model.eval()
            with policy.autocast():
                model(xb[:1]).float().argmax(1)
        fns[prec, "train"], fns[prec, "infer"] = train, infer
        for fn in (train, infer):
            timed(fn, max(1, settings.warmup), 0, device)
    times: dict[tuple[str, str], list[float]] = {k: [] for k in fns}
    for _ in range(settings.steps):
        for key, fn in fns.items():
            times[key] += timed(fn, 0, 1, device)
    rows = []
    for (prec, kind), ts in times.items():
        n = settings.seg_batch if kind == "train" else 1
        rows.append({"backbone": backbone, "precision": prec, "kind": kind,
                     "images_per_s": n / statistics.median(ts), "step_s": statistics.median(ts)})
    return rows


def bench_pie(settings: BenchSettings) -> dict[str, Any]:
    """Share of PIE's (hw)×(hw) similarity (models.pie.matching_maps, fwd+bwd) in a CISM step."""
    from cism_lib.models.pie import matching_maps

    device = resolve(settings)
    policy = named_precision(device, settings.precisions[-1])
    at = dc_replace(settings, size=settings.pie_size, batch=settings.pie_batch)
    step = bench_train(at, settings.pie_backbone, "cism")
    mcfg = ModelConfig()
    side = -(-settings.pie_size // mcfg.output_stride)
    g = torch.Generator().manual_seed(settings.seed)
    x_q, x_r = (torch.randn(settings.pie_batch, mcfg.proto_dim, side, side, generator=g)
                .to(device).requires_grad_() for _ in range(2))

    def similarity() -> None:
        with policy.autocast():
            a_q, a_r = matching_maps(x_q, x_r)
        (a_q.float().sum() + a_r.float().sum()).backward()

    pie = statistics.median(timed(similarity, settings.warmup, settings.steps, device))
    sim_flops = 2 * (side * side) ** 2 * mcfg.proto_dim  # X_Qᵀ X_R of one pair
    pair_flops = 2 * forward_flops(settings.pie_backbone, "cism", settings.pie_size)
    return {"size": settings.pie_size, "positions": side * side, "batch": settings.pie_batch,
            "precision": settings.precisions[-1],
            "backbone": settings.pie_backbone, "proto_dim": mcfg.proto_dim,
            "step_s": step["step_s"], "pie_s": pie, "share": pie / step["step_s"],
            "sim_fwd_gflops_per_pair": sim_flops / 1e9, "flops_share": sim_flops / pair_flops}


# ----------------------------------------------------------------------------- CRF, SynthAerial
@dataclass
class SceneSet:
    """A minimal in-memory dataset (dataset protocol of docs/design.md) of rendered scenes."""

    images: list[np.ndarray]
    masks: list[np.ndarray]

    @property
    def ids(self) -> list[str]:
        """Sample ids."""
        return [f"scene{i:04d}" for i in range(len(self.images))]

    @property
    def classes(self):
        """The iSAID class set (SynthAerial uses it)."""
        from cism_lib.classes import ISAID

        return ISAID

    @property
    def labels(self) -> np.ndarray:
        """bool [N, K] image-level labels."""
        k = self.classes.num_foreground
        return np.stack([np.isin(np.arange(1, k + 1), m) for m in self.masks])

    def __len__(self) -> int:
        return len(self.images)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(image, mask) of sample i."""
        return self.images[i], self.masks[i]

    def read_image(self, i: int) -> np.ndarray:
        """Image i alone."""
        return self.images[i]


def render_scenes(n: int, size: int, seed: int = 0) -> SceneSet:
    """n SynthAerial scenes of size × size."""
    from cism_lib.data.synthetic import render_scene

    pairs = [render_scene(np.random.default_rng([seed, i]), size) for i in range(n)]
    return SceneSet([p[0] for p in pairs], [p[1] for p in pairs])


def fake_cams(scenes: SceneSet, out_dir: Path) -> None:
    """CAM files whose maps are blurred ground-truth masks (realistic shapes for the CRF)."""
    from scipy.ndimage import gaussian_filter

    from cism_lib.cam import save_cam

    k = scenes.classes.num_foreground
    for sid, mask, label in zip(scenes.ids, scenes.masks, scenes.labels):
        cam = np.zeros((k, *mask.shape), dtype=np.float32)
        for c in np.flatnonzero(label):
            blurred = gaussian_filter((mask == c + 1).astype(np.float32), sigma=mask.shape[0] / 32)
            cam[c] = blurred / max(float(blurred.max()), 1e-6)
        save_cam(out_dir / f"{sid}.npz", cam, label)


def bench_crf(settings: BenchSettings) -> dict[str, Any]:
    """Pseudo-mask images/s (CRF + argmax + PNG) in one process vs the process pool."""
    from cism_lib.crf import make_pseudo_masks, read_index_png

    workers = settings.crf_workers or os.cpu_count() or 1
    size = settings.crf_size or settings.size
    scenes = render_scenes(settings.crf_images, size, settings.seed)
    with tempfile.TemporaryDirectory(prefix="cism-bench-") as tmp:
        root = Path(tmp)
        fake_cams(scenes, root / "cams")
        secs = {}
        for name, n in (("single", 1), ("pool", workers)):
            t0 = time.perf_counter()
            make_pseudo_masks(root / "cams", scenes, root / name, CrfConfig(), bg_threshold=0.25,
                              workers=n, progress=False, skip_done=False)
            secs[name] = time.perf_counter() - t0
        same = all(np.array_equal(read_index_png(root / "single" / f"{s}.png"),
                                  read_index_png(root / "pool" / f"{s}.png")) for s in scenes.ids)
    n = settings.crf_images
    return {"images": n, "size": size, "workers": workers,
            "single_images_per_s": n / secs["single"], "pool_images_per_s": n / secs["pool"],
            "speedup": secs["single"] / secs["pool"], "pool_matches_single": same}


def bench_synth(settings: BenchSettings) -> dict[str, Any]:
    """SynthAerial render_scene images/s in this one process (one core)."""
    from cism_lib.data.synthetic import render_scene

    size, n = settings.synth_size, settings.synth_images
    render_scene(np.random.default_rng(10**6), size)  # warm-up (imports, caches)
    t0 = time.perf_counter()
    for i in range(n):
        render_scene(np.random.default_rng([settings.seed, i]), size)
    secs = time.perf_counter() - t0
    return {"images": n, "size": size, "images_per_s": n / secs}


# ----------------------------------------------------------------------------- run + report
def _progress(msg: str) -> None:
    """One progress line on stdout."""
    print(f"[bench] {msg}", flush=True)


def run_training(settings: BenchSettings, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Training rows for every backbone × method (with FLOPs/MFU), optionally on the real pipeline."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="cism-bench-data-") as tmp:
        for bb in settings.backbones:
            data = pipeline_pairs(settings, bb, Path(tmp)) if settings.with_data else None
            for row in bench_train_group(settings, bb, settings.methods, data):
                row = add_flops(row, settings.size, settings.peak_tflops)
                log(f"train {bb:18s} {row['method']:5s} {row['images_per_s']:8.2f} images/s "
                    f"({row['step_s']:.3f} s/step, {row['peak_mem_mib']:.0f} MiB)")
                rows.append(row)
    return rows


def flops_table(settings: BenchSettings) -> list[dict[str, Any]]:
    """Forward GFLOPs/image at flops_size and the images/s each MFU level implies."""
    rows = []
    for bb in dict.fromkeys((*settings.backbones, settings.pie_backbone)):
        for method in settings.methods:
            fwd = forward_flops(bb, method, settings.flops_size)
            row = {"backbone": bb, "method": method, "size": settings.flops_size,
                   "fwd_gflops_per_image": fwd / 1e9,
                   "train_gflops_per_image": TRAIN_FLOPS_FACTOR * fwd / 1e9,
                   "target_images_per_s": TARGETS["gpu_images_per_s"]}
            if settings.peak_tflops:
                row["mfu_at_target"] = mfu(TARGETS["gpu_images_per_s"], fwd, settings.peak_tflops)
            rows.append(row)
    return rows


def run_all(settings: BenchSettings, log: Callable[[str], None] = _progress) -> dict[str, Any]:
    """Every measurement of one run, as the dict written to results/bench.json."""
    threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        return _measure_all(settings, log)
    finally:
        torch.set_num_threads(threads)


def _measure_all(settings: BenchSettings, log: Callable[[str], None]) -> dict[str, Any]:
    """run_all with the thread count already set."""
    from cism_lib.runtime import versions

    device = resolve(settings)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    load0 = os.getloadavg()
    log(f"{device_name(device)}; settings {asdict(settings)}")
    warm_up(settings)
    train = run_training(settings, log)
    cams = [row for bb in settings.backbones for row in bench_cam(settings, bb)]
    log("CAM " + ", ".join(f"{c['backbone']} {c['precision']} {c['images_per_s']:.2f} images/s" for c in cams))
    seg = [row for bb in settings.backbones for row in bench_seg(settings, bb)]
    log("DeepLab " + ", ".join(f"{r['backbone']} {r['precision']} {r['kind']} {r['images_per_s']:.2f}"
                               for r in seg))
    compiled = bench_compile(settings, settings.backbones[-1]) if settings.compile else None
    if compiled:
        log(f"torch.compile {compiled['backbone']}: first step {compiled['first_step_s']:.1f} s, "
            f"speed-up {compiled['speedup']:.2f}")
    crf = bench_crf(settings)
    log(f"CRF single {crf['single_images_per_s']:.2f}, pool {crf['pool_images_per_s']:.2f} images/s")
    synth = bench_synth(settings)
    log(f"SynthAerial {synth['images_per_s']:.2f} images/s")
    pie = bench_pie(settings)
    log(f"PIE similarity {pie['pie_s'] * 1e3:.1f} ms of a {pie['step_s']:.3f} s step")
    return {"schema": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "device": {"type": device.type, "name": device_name(device),
                       "torch_threads": torch.get_num_threads()},
            "versions": versions(), "settings": asdict(settings),
            "load_average": {"start": list(load0), "end": list(os.getloadavg())},
            "targets": TARGETS, "train": train, "ratios": train_ratios(train), "cam": cams,
            "seg": seg, "compile": compiled, "crf": crf, "synth": synth, "pie": pie,
            "flops": flops_table(settings)}


def _fmt(x: float) -> str:
    """A number with three significant digits."""
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def _train_table(result: dict[str, Any]) -> list[str]:
    """Markdown rows of the training measurements (one per backbone × method × precision)."""
    ratios = result["ratios"]
    lines = ["| backbone | method | precision | images/s | s/step | peak mem (MiB) | fwd GFLOPs/image | "
             "images/s ÷ CAM | bf16 ÷ fp32 |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    fastest = {r["backbone"]: r.get("precision", "fp32") for r in result["train"]}
    fastest.update({r["backbone"]: "bf16" for r in result["train"] if r.get("precision") == "bf16"})
    for r in result["train"]:
        prec = r.get("precision", "fp32")
        rb = ratios.get(r["backbone"], {})
        ratio = rb.get(f"{r['method']}_over_cam", 1.0) if prec == fastest[r["backbone"]] else None
        speed = rb.get(f"{r['method']}_bf16_over_fp32") if prec == "bf16" else None
        lines.append(f"| {r['backbone']} | {r['method']} | {prec} | {_fmt(r['images_per_s'])} | "
                     f"{r['step_s']:.3f} | {r['peak_mem_mib']:.0f} | "
                     f"{r['fwd_gflops_per_image']:.1f} | {'' if ratio is None else f'{ratio:.2f}'} | "
                     f"{'' if speed is None else f'**{speed:.2f}×**'} |")
    return lines


def _by_precision(rows: Sequence[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
    """{group: {precision: images/s}} of rows grouped by `key`."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        out.setdefault(r[key], {})[r["precision"]] = r["images_per_s"]
    return out


def _precision_cells(by: dict[str, float]) -> str:
    """'fp32 a, bf16 b images/s (b/a×)'."""
    text = ", ".join(f"{p} {_fmt(v)}" for p, v in by.items()) + " images/s"
    if "fp32" in by and "bf16" in by:
        text += f" (bf16 ÷ fp32 **{by['bf16'] / by['fp32']:.2f}×**)"
    return text


def _stage_table(result: dict[str, Any]) -> list[str]:
    """Markdown rows of the CAM, DeepLab, compile, CRF, SynthAerial and PIE measurements."""
    s, crf, synth, pie = result["settings"], result["crf"], result["synth"], result["pie"]
    scales = "/".join(f"{x:g}" for x in s["cam_scales"])
    lines = ["| stage | measured |", "|---|---|"]
    for bb, by in _by_precision(result["cam"], "backbone").items():
        lines.append(f"| multi-scale CAM ({scales} + flip), {bb}, {s['size']}² | {_precision_cells(by)} |")
    for r in result.get("seg") or []:
        r["group"] = f"{r['backbone']} {r['kind']}"
    for group, by in _by_precision(result.get("seg") or [], "group").items():
        bb, kind = group.split()
        what = f"training step, batch {s['seg_batch']}" if kind == "train" else "inference, 1 image"
        lines.append(f"| DeepLab-LargeFOV {what}, {bb}, {s['size']}² | {_precision_cells(by)} |")
    comp = result.get("compile")
    if comp:
        be = comp["break_even_steps"]
        lines.append(f"| torch.compile, {comp['backbone']} {comp['method']} training, {comp['precision']} | "
                     f"first step {comp['first_step_s']:.0f} s; {comp['compiled_step_s']:.2f} vs eager "
                     f"{comp['eager_step_s']:.2f} s/step = {comp['speedup']:.2f}× "
                     f"({'pays off after ' + str(round(be)) + ' steps' if be else 'never pays off'}) |")
    target = TARGETS["crf_pool_speedup"]
    lines += [
        f"| pseudo-masks (CRF + argmax + PNG), {crf['size']}², 1 process | "
        f"{_fmt(crf['single_images_per_s'])} images/s |",
        f"| pseudo-masks, pool of {crf['workers']} processes | {_fmt(crf['pool_images_per_s'])} "
        f"images/s: **{crf['speedup']:.2f}×** (target ≥ {target}×; masks identical: "
        f"{'yes' if crf['pool_matches_single'] else 'NO'}) |",
        f"| SynthAerial render_scene {synth['size']}², 1 core | {_fmt(synth['images_per_s'])} images/s |",
        f"| PIE similarity (fwd+bwd, {pie.get('precision', 'fp32')}), {pie['size']}² → {pie['positions']} "
        f"positions, {pie['backbone']} batch {pie['batch']} | {pie['pie_s'] * 1e3:.1f} ms of a "
        f"{pie['step_s']:.2f} s CISM step = **{100 * pie['share']:.1f} %** (forward FLOPs share "
        f"{100 * pie['flops_share']:.1f} %) |"]
    return lines


def command_line(settings: dict[str, Any]) -> str:
    """The bench command that reproduces a run's settings (flags that differ from the defaults)."""
    base = asdict(BenchSettings(**QUICK) if settings.get("quick") else BenchSettings())
    flags = ["--quick"] if settings.get("quick") else []
    for key, value in settings.items():
        if key == "quick" or value == base.get(key) or (isinstance(value, list) and
                                                        tuple(value) == base.get(key)):
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag)
        else:
            flags.append(f"{flag} {' '.join(map(str, value)) if isinstance(value, (list, tuple)) else value}")
    return "python -m cism_lib.tools.bench --device " + " ".join([settings["device"], *flags])


def render_markdown(result: dict[str, Any]) -> str:
    """The Markdown block of one run: header, training table, ratio line, stage table."""
    s, dev, load = result["settings"], result["device"], result["load_average"]
    prec = (" vs ".join(s.get("precisions", ["fp32"])) + " (bf16 = autocast + channels_last, "
            "losses in fp32), measured interleaved")
    data = "real pipeline (SynthAerial pairs + DataLoader)" if s["with_data"] else "random tensors"
    head = [f"Run {result['created']} on **{dev['name']}**, torch {result['versions']['torch']} "
            f"({dev['torch_threads']} threads), Python {result['versions']['python']}"
            f"{' — quick mode' if s['quick'] else ''}.",
            f"Training: {s['size']}², batch {s['batch']} pairs ({2 * s['batch']} images), "
            f"median of {s['steps']} steps after {s['warmup']} warm-up, {prec}, inputs: {data}, "
            f"weights random, fused Adam, Lite0 depthwise backward `{s.get('depthwise_grad', 'aten')}`. "
            f"Load average at start/end: "
            f"{load['start'][0]:.1f} / {load['end'][0]:.1f} on {os.cpu_count()} cores.",
            f"Command: `{command_line(s)}`.", ""]
    ratio = "; ".join(f"{bb} **{r['cism_over_cam']:.2f}**" for bb, r in result["ratios"].items()
                      if "cism_over_cam" in r)
    cian = "; ".join(f"{bb} {r['cism_over_cian']:.2f}" for bb, r in result["ratios"].items()
                     if "cism_over_cian" in r)
    mid = ["", f"CISM ÷ CAM training images/s: {ratio or 'n/a'} (target ≥ "
           f"{TARGETS['cism_over_cam']}); CISM ÷ CIAN: {cian or 'n/a'}.", ""]
    return "\n".join(head + _train_table(result) + mid + _stage_table(result)) + "\n"


def update_doc(path: str | Path, key: str, block: str) -> None:
    """Replace the lines between `<!-- bench:key -->` and `<!-- /bench:key -->` (appended if absent).

    Only markers standing alone on a line count, so prose may mention them inline.
    """
    import re

    from cism_lib.runtime import write_text_atomic

    path = Path(path)
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    text = path.read_text() if path.is_file() else ""
    body = f"{start}\n{block.rstrip()}\n{end}"
    found = re.search(rf"^{re.escape(start)}[ \t]*$.*?^{re.escape(end)}[ \t]*$", text, re.MULTILINE | re.DOTALL)
    if found:
        text = text[:found.start()] + body + text[found.end():]
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + body + "\n"
    write_text_atomic(path, text)


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """An argparse parser with one flag per BenchSettings field (given flags only)."""
    p = argparse.ArgumentParser(prog="python -m cism_lib.tools.bench", description=__doc__.splitlines()[0],
                                argument_default=argparse.SUPPRESS)
    add_dataclass_flags(p, BenchSettings, typed=True, kebab=True)
    p.add_argument("--out", type=Path, help=f"JSON file (default {DEFAULT_JSON}; "
                   "results/bench_quick.json with --quick)")
    p.add_argument("--doc", type=Path, help=f"Markdown file whose bench block is replaced "
                   f"(default {DEFAULT_DOC}; none with --quick)")
    p.add_argument("--no-doc", action="store_true", help="do not touch the Markdown file")
    return p


def parse_settings(argv: Sequence[str] | None = None) -> tuple[BenchSettings, dict[str, Any]]:
    """Settings (quick defaults under --quick, then the given flags) and the output options."""
    given = vars(build_parser().parse_args(argv))
    outputs = {k: given.pop(k) for k in ("out", "doc", "no_doc") if k in given}
    base = BenchSettings(**QUICK) if given.get("quick") else BenchSettings()
    settings = dc_replace(base, **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
    return settings, outputs


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmarks, write the JSON and the Markdown block; returns the result."""
    from cism_lib.runtime import write_json_atomic

    settings, outputs = parse_settings(argv)
    out = outputs.get("out") or (Path("results/bench_quick.json") if settings.quick else DEFAULT_JSON)
    doc = None if outputs.get("no_doc") else outputs.get("doc") or (None if settings.quick else DEFAULT_DOC)
    result = run_all(settings)
    write_json_atomic(out, result)
    _progress(f"wrote {out}")
    if doc is not None:
        update_doc(doc, "gpu" if result["device"]["type"] == "cuda" else "cpu", render_markdown(result))
        _progress(f"updated {doc}")
    return result


if __name__ == "__main__":
    main()

"""Run-time plumbing shared by the stages: devices, seeds, atomic files, versions, distributed info."""
from __future__ import annotations

import errno
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


HEADLESS_ENV = "CISM_HEADLESS"  # set to 1 by make reproduce and make test: no widgets, no bars


def headless() -> bool:
    """True under CISM_HEADLESS=1 (make reproduce, make test): notebooks run with no one watching."""
    return os.environ.get(HEADLESS_ENV, "") == "1"


def progress_bar(iterable: Any = None, **kwargs: Any) -> Any:
    """A tqdm bar: widgets in Jupyter, text in a terminal, none in headless runs.

    Executed notebooks (papermill) would otherwise keep every bar as a frozen widget in their
    outputs; headless, the bar is disabled (tqdm still iterates and counts).
    """
    from tqdm.auto import tqdm

    if headless():
        kwargs["disable"] = True
    return tqdm(iterable, **kwargs)


@dataclass(frozen=True)
class DistInfo:
    """Process rank and world size, read from torchrun's environment variables."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        """True when launched by torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes checkpoints."""
        return self.rank == 0


def dist_info() -> DistInfo:
    """Read RANK / LOCAL_RANK / WORLD_SIZE as torchrun sets them (single process otherwise)."""
    env = os.environ
    return DistInfo(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)))


def resolve_device(name: str = "auto", local_rank: int = 0):
    """'auto' → the local CUDA device when there is one, else CPU."""
    import torch

    if name == "auto":
        name = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    elif name == "cuda":
        name = f"cuda:{local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        from cism_lib.errors import ConfigError
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use device: cpu")
    return torch.device(name)


def cpu_bf16_supported() -> bool:
    """True when this CPU runs bf16 convolutions natively (oneDNN's check: AVX512-BF16 or AMX)."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


@dataclass(frozen=True)
class Precision:
    """The numeric policy of one stage: autocast dtype (None = fp32) and memory format.

    One policy for every stage (classifier training, CAM inference, DeepLab training and
    inference, bench): bf16 autocast + channels_last on CUDA and on CPUs with native bf16,
    fp32 (contiguous) elsewhere or when `amp` is off. Losses and metrics stay fp32: callers
    cast logits with `.float()` before a loss, and autocast keeps BatchNorm statistics in fp32.
    """

    device_type: str
    dtype: Any = None
    channels_last: bool = False

    @property
    def name(self) -> str:
        """'bf16', 'fp16' or 'fp32'."""
        return {"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(str(self.dtype), "fp32")

    def autocast(self):
        """The autocast context of the policy (disabled for fp32)."""
        import torch

        return torch.autocast(self.device_type, dtype=self.dtype or torch.bfloat16,
                              enabled=self.dtype is not None)

    def model(self, module: Any) -> Any:
        """The module in the policy's memory format (in place, returned)."""
        import torch

        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def images(self, x: Any) -> Any:
        """A 4-D image batch in the policy's memory format."""
        import torch

        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    def record(self) -> dict[str, str]:
        """What run records store: precision and memory format."""
        return {"precision": self.name,
                "memory_format": "channels_last" if self.channels_last else "contiguous"}


def precision_for(device: Any, amp: bool = True, channels_last: bool = True,
                  inference: bool = False) -> Precision:
    """The precision policy for a device: bf16 + channels_last where bf16 is native, else fp32.

    On a CUDA device without bf16, inference falls back to fp16 (training has no GradScaler and
    stays fp32). `amp=False` is exactly the fp32, contiguous path.
    """
    import torch

    kind = torch.device(device).type
    dtype = None
    if amp and kind == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else (torch.float16 if inference else None)
    elif amp and kind == "cpu" and cpu_bf16_supported():
        dtype = torch.bfloat16
    return Precision(kind, dtype, channels_last=channels_last and dtype is not None)


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None or 0: leave torch's default); returns the count."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def setup_cpu(threads: int | None) -> int:
    """What every stage does first: the thread count (set_threads) and the allocator
    (retain_freed_memory); returns the thread count."""
    retain_freed_memory()
    return set_threads(threads)


DEFAULT_MALLOC_ENV = "CISM_DEFAULT_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)
_RETAINED: list[bool] = []


def retain_freed_memory() -> bool:
    """Keep freed CPU memory in this process's heap (glibc only; idempotent): True if set.

    glibc serves every block above 32 MB (and, after a free, many smaller ones) with a fresh
    mmap and unmaps it on free, so each training step's large activations page-fault and are
    zeroed again by the kernel; on this 2-core machine that made the Lite0 forward ~1.6× slower
    (docs/benchmarks.md, "Allocator"). With mmap off and trimming at 64 GB, freed blocks are
    reused; the process keeps its peak heap instead of returning it. Numbers are unchanged (the
    same kernels on the same data; tests/test_runtime.py trains twice to check).
    CISM_DEFAULT_MALLOC=1 leaves glibc's defaults (a process that must give memory back).
    """
    if _RETAINED:
        return _RETAINED[0]
    ok = False
    if sys.platform.startswith("linux") and os.environ.get(DEFAULT_MALLOC_ENV) != "1":
        import ctypes
        import ctypes.util

        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 64 << 30))
        except (OSError, AttributeError):  # not glibc (musl has no mallopt)
            ok = False
    _RETAINED.append(ok)
    return ok


# ----------------------------------------------------------------------------- stopping and sharing
def stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and `kill` (SIGTERM) both raise KeyboardInterrupt in the main thread, so a
    long job stops where it is: the atomic writes in flight leave the previous file, pools stop
    their workers (process_pool), and the next run resumes from the last finished file.

    A process started in the background by a non-interactive shell (`cism run ... &` in a
    script, nohup) inherits SIGINT as ignored, and Python then leaves it ignored: the job could
    only be killed. The command line installs this at start, so `kill -INT` and Ctrl-C stop it
    wherever it was started. Main thread only (signal handlers live there).
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def process_pool(workers: int, mp_context: Any = None) -> Iterator[Any]:
    """A ProcessPoolExecutor that, when its block is left by an exception (a Ctrl-C included),
    cancels the jobs not started and terminates its workers instead of waiting for the running
    ones: nothing is left behind, and a stopped job's output is never half written (each job
    writes atomically)."""
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp_context)
    try:
        yield pool
    except BaseException:
        workers_now = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before 3.14
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers_now:
            proc.kill()  # each job writes atomically: nothing to finish
        # the pool's own thread may reap a worker first (then one join sees it alive a while longer)
        deadline = time.monotonic() + 10
        while any(proc.is_alive() for proc in workers_now) and time.monotonic() < deadline:
            for proc in workers_now:
                proc.join(timeout=0.1)
        raise
    else:
        pool.shutdown(wait=True)


LOCK_NAME = ".lock"
_HELD: dict[Path, list[int]] = {}  # folder -> [fd, depth] of the locks this process holds


@contextmanager
def folder_lock(folder: str | Path, wait: bool = True, log: Any = None) -> Iterator[None]:
    """One writer per run folder: an OS file lock (flock) on `<folder>/.lock`, held while the
    block runs and released by the OS when the process ends however it ends, so a killed
    process never leaves a stale lock. Re-entrant within a process.

    A folder held by another process: with `wait`, one line naming that process (to `log`,
    default stderr), then wait for it; without, a FolderBusyError naming it. Readers (notebooks,
    `cism runs`, summaries) take no lock. Where the OS has no flock (Windows), no lock.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    from cism_lib.errors import FolderBusyError

    folder = Path(folder).resolve()
    if folder in _HELD:
        _HELD[folder][1] += 1
        try:
            yield
        finally:
            _HELD[folder][1] -= 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 400, 0).decode(errors="replace").strip() or "another process"
            if not wait:
                raise FolderBusyError(f"{folder}: {holder} is writing this folder; wait for it to "
                                      "finish or stop it") from None
            say = log or (lambda text: print(text, file=sys.stderr, flush=True))
            say(f"{folder}: {holder} is writing this folder; waiting for it (Ctrl-C to stop)")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))[:200]
        os.pwrite(fd, f"process {os.getpid()} ({command})".encode(), 0)
        _HELD[folder] = [fd, 1]
        yield
    finally:
        if _HELD.get(folder, [None])[0] == fd:
            del _HELD[folder]
        os.close(fd)  # releases the lock


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name ends in the real suffix, so numpy and PIL see the intended format.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except Exception as exc:
        # torch and PIL report a full disk in their own words: ask the file system
        if getattr(exc, "errno", None) == errno.ENOSPC or _disk_full(path.parent):
            from cism_lib.errors import DiskFullError

            raise DiskFullError(f"{path}: the disk is full, so it could not be written (a previous "
                                f"{path.name}, if there was one, is intact): free some space and run "
                                "the command again") from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _disk_full(folder: Path, margin: int = 1 << 20) -> bool:
    """True when the file system of `folder` has less than `margin` bytes free."""
    import shutil

    try:
        return shutil.disk_usage(folder).free < margin
    except OSError:
        return False


def load_checkpoint_file(path: str | Path, what: str, remedy: str, missing: str) -> dict[str, Any]:
    """A cism_lib checkpoint (a dict with a 'model' entry) read on the CPU, or a CheckpointError
    in one line: which file, what is wrong with it (cut short, not a PyTorch file, made by another
    program) and `remedy`, the command that makes it again; `missing`: what to do when absent."""
    import torch

    from cism_lib.errors import CheckpointError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no {what} here; {missing}")
    size = path.stat().st_size
    with path.open("rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
        if size == 0 or (zipped and "Weights only load failed" not in str(exc)):
            problem = f"the {what} is cut short ({size} bytes: a copy or a disk that failed)"
        elif zipped:
            problem = f"not a {what}: it holds Python objects that cism_lib never saves (another program's file?)"
        else:
            problem = f"not a {what}: not a PyTorch file"
        raise CheckpointError(f"{path}: {problem}; {remedy}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a {what}: a PyTorch file without cism_lib's 'model' entry "
                              f"(another program's file?); {remedy}")
    return state


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON atomically (indented; through `json_safe`, so NaN/inf become null)."""
    write_text_atomic(path, json.dumps(json_safe(data), indent=2) + "\n")


def json_safe(x: Any) -> Any:
    """A JSON-serialisable copy of `x`: numpy scalars/arrays → Python, NaN/inf → None, paths → str.

    The one sanitiser for every JSON file the library writes (run records, metrics, bench).
    """
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):  # numpy scalar or array
        return json_safe(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The current git commit of the project, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo, else platform): oneDNN picks its kernels by
    instruction set (e.g. AMX on Intel Xeon, AVX512-BF16 on AMD Zen 4), so bf16 numbers can
    differ in the rounding from one processor to another."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions() -> dict[str, Any]:
    """Versions of Python, the key packages and the device, for run records."""
    import numpy as np
    import torch

    import cism_lib

    info: dict[str, Any] = {
        "cism_lib": cism_lib.__version__, "python": sys.version.split()[0],
        "platform": platform.platform(), "torch": torch.__version__, "numpy": np.__version__,
        "git_commit": git_commit(), "cpu": cpu_model(), "cpu_isa": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "cpu_bf16": cpu_bf16_supported(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    return info

"""Run-time plumbing shared by the stages: devices, seeds, atomic files, versions, distributed info."""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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


def autocast(device: Any, enabled: bool = True, fp16_fallback: bool = False):
    """Mixed precision on CUDA (bf16; fp16 where bf16 is unsupported and fp16_fallback, i.e. for
    inference: training has no GradScaler); a no-op context on every other device."""
    import torch

    on_cuda = enabled and torch.device(device).type == "cuda"
    dtype = torch.bfloat16
    if on_cuda and fp16_fallback and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return torch.autocast(device_type="cuda" if on_cuda else "cpu", dtype=dtype, enabled=on_cuda)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch RNGs."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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


def versions() -> dict[str, Any]:
    """Versions of Python, the key packages and the device, for run records."""
    import numpy as np
    import torch

    import cism_lib

    info: dict[str, Any] = {
        "cism_lib": cism_lib.__version__, "python": sys.version.split()[0],
        "platform": platform.platform(), "torch": torch.__version__, "numpy": np.__version__,
        "git_commit": git_commit(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    return info

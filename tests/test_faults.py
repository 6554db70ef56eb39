"""Faults a long job meets: Ctrl-C and `kill`, a second process on the same run folder, damaged
files, a full disk, and a run resumed in another process (docs/testing.md, "Faults")."""
from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from cism_lib import pipeline, runtime
from cism_lib.errors import CheckpointError, DataError, DiskFullError, FolderBusyError
from tests.test_pipeline import _data_env, data_dir, tiny_config  # noqa: F401 (the module's SynthAerial fixtures)

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, *args: str, ignore_sigint: bool = False) -> subprocess.Popen:
    """A Python child running `code`, in its own session; with SIGINT ignored as a non-interactive
    shell leaves it for a job started with `&`."""
    def preexec() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN if ignore_sigint else signal.SIG_DFL)

    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, start_new_session=True,
                            preexec_fn=preexec, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, word: str) -> None:
    """Block until the child prints `word` on a line of its stdout."""
    for line in proc.stdout:
        if word in line:
            return
    raise AssertionError(f"child ended before {word!r}: {proc.stderr.read()}")


# A `cism` command that stays busy: `cism runs DIR` with the table builder replaced by a long sleep.
BUSY_CLI = """
import sys, time
from cism_lib import cli, pipeline
def busy(folder):
    print("busy", flush=True)
    time.sleep(120)
pipeline.collect_runs = busy
raise SystemExit(cli.main(["runs", sys.argv[1]]))
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_command_started_in_the_background_stops_on_ctrl_c_and_kill(tmp_path, signum):
    """A job started with `&` by a script inherits SIGINT as ignored; `cism` stops on it anyway,
    and on SIGTERM, in one line and exit code 130."""
    proc = _python(BUSY_CLI, str(tmp_path), ignore_sigint=True)
    _wait_for(proc, "busy")
    start = time.monotonic()
    os.killpg(proc.pid, signum)
    try:
        code = proc.wait(timeout=20)
    finally:
        proc.kill()
    assert code == 130 and time.monotonic() - start < 20
    assert proc.stderr.read().strip().splitlines() == ["interrupted"]


def _sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


def test_an_interrupted_pool_stops_its_workers_at_once():
    """Leaving a process_pool by an exception (Ctrl-C) does not wait for the running jobs, and no
    worker process is left behind."""
    import multiprocessing

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with runtime.process_pool(2, multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_sleep, 60) for _ in range(4)]
            while not futures[1].running():  # both workers have started a job
                time.sleep(0.05)
            workers = list(pool._processes.values())
            raise KeyboardInterrupt
    assert time.monotonic() - start < 30
    assert len(workers) == 2 and not any(p.is_alive() for p in workers)


HOLDER = """
import sys, time
from cism_lib.runtime import folder_lock
with folder_lock(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(120)
"""


def test_a_second_writer_is_told_which_process_holds_the_folder(tmp_path):
    holder = _python(HOLDER, str(tmp_path))
    try:
        _wait_for(holder, "holding")
        with pytest.raises(FolderBusyError, match=rf"process {holder.pid} \(.*\) is writing this folder"):
            with runtime.folder_lock(tmp_path, wait=False):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_a_waiting_writer_goes_on_once_the_holder_is_killed(tmp_path):
    """The lock is the OS's: a SIGKILLed holder leaves nothing that blocks."""
    holder = _python(HOLDER, str(tmp_path))
    _wait_for(holder, "holding")
    said: list[str] = []

    def kill_holder(line: str) -> None:  # called once the writer has found the folder busy
        said.append(line)
        holder.kill()

    with runtime.folder_lock(tmp_path, log=kill_holder):
        assert (tmp_path / runtime.LOCK_NAME).read_text().startswith(f"process {os.getpid()} ")
    holder.wait()
    assert len(said) == 1 and f"process {holder.pid}" in said[0] and "waiting for it" in said[0]


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with runtime.folder_lock(tmp_path):
        with runtime.folder_lock(tmp_path, wait=False):
            pass
        with runtime.folder_lock(tmp_path, wait=False):  # still held by the outer block
            pass
    with runtime.folder_lock(tmp_path, wait=False):
        pass


def test_a_run_holds_its_folder_while_its_stages_run(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, **{"seg.enabled": False})
    seen = {}

    def train(cfg, rd, **kwargs):
        probe = _python("import sys\nfrom cism_lib.runtime import folder_lock\n"
                        "with folder_lock(sys.argv[1], wait=False): pass", str(rd))
        seen["code"], seen["err"] = probe.wait(timeout=60), probe.stderr.read()
        raise KeyboardInterrupt  # stop the run here

    monkeypatch.setattr(pipeline, "stage_train", train)
    with pytest.raises(KeyboardInterrupt):
        pipeline.run_all(cfg, progress=False)
    assert seen["code"] != 0 and "FolderBusyError" in seen["err"] and f"process {os.getpid()}" in seen["err"]
    with runtime.folder_lock(pipeline.run_dir(cfg), wait=False):  # released when the run stopped
        pass


# ----------------------------------------------------------------------------- damaged files
def _checkpoint(path: Path) -> Path:
    torch.save({"model": {"w": torch.ones(64)}, "epoch": 0}, path)
    return path


def test_a_damaged_checkpoint_says_what_is_wrong_and_what_to_do(tmp_path):
    from cism_lib.engine import load_checkpoint

    good = _checkpoint(tmp_path / "good.pt").read_bytes()
    (tmp_path / "short.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_bytes(b"these are not weights")
    torch.save({"model": zipfile.ZipInfo("x")}, tmp_path / "objects.pt")  # a Python object torch refuses
    torch.save({"weights": {}}, tmp_path / "other.pt")
    cases = {"short.pt": r"classifier checkpoint is cut short \(\d+ bytes",
             "empty.pt": r"classifier checkpoint is cut short \(0 bytes",
             "text.pt": "not a classifier checkpoint: not a PyTorch file",
             "objects.pt": "not a classifier checkpoint: it holds Python objects",
             "other.pt": "not a classifier checkpoint: a PyTorch file without cism_lib's 'model' entry"}
    for name, problem in cases.items():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / name)
        message = str(info.value)
        assert "\n" not in message and message.startswith(str(tmp_path / name)), message
        assert re.search(problem, message), message
        assert message.endswith("delete it and run the same command again: the classifier trains again "
                                "from its first epoch"), message
    with pytest.raises(CheckpointError, match=r"missing\.pt: no classifier checkpoint here; train the classifier first"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_damaged_cam_file_or_pseudo_mask_names_the_command_that_remakes_it(tmp_path):
    from cism_lib.cam import load_cam
    from cism_lib.crf import read_index_png

    (tmp_path / "a.npz").write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(DataError, match=r"a\.npz: damaged CAM file .*delete it and redo the CAM stage "
                                        r"\(cism cams CONFIG --force, or cism chain RUN --stages cams --force\)"):
        load_cam(tmp_path / "a.npz", 15)
    (tmp_path / "m.png").write_bytes(b"\x89PNG\r\n\x1a\n cut")
    with pytest.raises(DataError, match=r"m\.png: damaged pseudo-mask .*cism pseudo CONFIG --force"):
        read_index_png(tmp_path / "m.png")
    with pytest.raises(DataError, match=r"n\.png: pseudo-mask not found \(make the pseudo-masks first"):
        read_index_png(tmp_path / "n.png")


def test_a_damaged_checkpoint_stops_the_command_in_one_line(tmp_path, capsys):
    from cism_lib.cli import main
    from cism_lib.config import save_config

    cfg = tiny_config(tmp_path, **{"seg.enabled": False})
    rd = pipeline.run_dir(cfg)
    (rd / "train").mkdir(parents=True)
    (rd / "train" / "checkpoint.pt").write_bytes(b"PK\x03\x04 half a file")
    pipeline.mark_done(rd, "train", {})
    save_config(cfg, tmp_path / "cfg.yaml")
    assert main(["cams", str(tmp_path / "cfg.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "checkpoint.pt: the classifier checkpoint is cut short" in err[0]


def test_a_full_disk_leaves_the_previous_file_and_says_so(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text("previous")

    with pytest.raises(DiskFullError, match=r"metrics\.json: the disk is full.*is intact\): free some space"):
        with runtime.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]

    # torch says it in its own words (RuntimeError): the file system is asked
    monkeypatch.setattr(runtime, "_disk_full", lambda folder, margin=1 << 20: True)
    with pytest.raises(DiskFullError):
        with runtime.atomic_path(target) as tmp:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    assert target.read_text() == "previous"
    monkeypatch.setattr(runtime, "_disk_full", lambda folder, margin=1 << 20: False)
    with pytest.raises(RuntimeError, match="file write failed"):  # any other failure stays itself
        with runtime.atomic_path(target) as tmp:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")


# ----------------------------------------------------------------------------- resuming in another process
def test_a_stage_run_in_a_later_process_draws_as_the_uninterrupted_run(tmp_path, monkeypatch):
    """The stages after training start from torch's generator as the stage before left it, so an
    unseeded draw (stage_segment's DeepLab head) is the same after a kill and a rerun."""
    cfg = tiny_config(tmp_path, **{"seg.enabled": False})
    entered = {}
    real_eval = pipeline.STAGE_FUNCS["eval"]

    def eval_stage(cfg, rd, **kwargs):
        entered.setdefault("states", []).append(torch.get_rng_state())
        return real_eval(cfg, rd, **kwargs)

    monkeypatch.setitem(pipeline.STAGE_FUNCS, "eval", eval_stage)
    rd = pipeline.run_all(cfg, stages=("train", "cams", "eval"), progress=False)  # uninterrupted
    (rd / "stages" / "eval.json").unlink()
    torch.manual_seed(12345)  # what a fresh process has: another state
    pipeline.run_all(cfg, stages=("eval",), progress=False)
    first, again = entered["states"]
    assert torch.equal(first, again)
    assert torch.equal(torch.load(rd / "stages" / "cams.rng.pt", weights_only=True), first)


def test_training_leaves_the_generator_as_its_last_epoch_did_even_when_nothing_is_left_to_train(tmp_path):
    cfg = tiny_config(tmp_path, **{"seg.enabled": False, "train.epochs": 1})
    rd = pipeline.run_dir(cfg)
    pipeline.stage_train(cfg, rd, progress=False)
    after = torch.get_rng_state()
    torch.manual_seed(777)
    pipeline.stage_train(cfg, rd, progress=False)  # resumes at its last checkpoint: no epoch runs
    assert torch.equal(torch.get_rng_state(), after)


def test_cism_lib_makes_openmp_wait_passively_unless_told_otherwise():
    code = "import os, cism_lib, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"


# ----------------------------------------------------------------------------- a kill in every stage
KILL_AT = {  # stage -> (files whose appearance means it is under way, how many)
    "train": ("train/log.jsonl", 1),
    "cams": ("cams/val/*.npz", 2),
    "pseudo": ("pseudo/train/*.png", 2),
    "segment (training)": ("seg/seg_log.jsonl", 1),
    "segment (scoring)": ("seg/seg_log.jsonl", 2),
}


def _cism_run(config: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cism_lib.cli", "run", str(config), "--out_dir", str(out)],
                            cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _lines_or_files(rd: Path, pattern: str) -> int:
    hits = sorted(rd.glob(pattern))
    if pattern.endswith(".jsonl"):
        return len(hits[0].read_text().splitlines()) if hits else 0
    return len(hits)


@pytest.mark.slow
def test_a_run_killed_in_every_stage_resumes_to_the_uninterrupted_numbers(tmp_path, data_dir):  # noqa: F811
    """SIGKILL once in each stage (training, CAMs, CRF pool, DeepLab training, DeepLab scoring),
    rerun each time: every figure of metrics.json equals the uninterrupted run's, and no stage
    finished before a kill is run again."""
    from cism_lib.config import save_config

    cfg = tiny_config(tmp_path, **{"train.epochs": 3, "seg.epochs": 2, "crf.workers": 2, "threads": 1,
                                   "data.synth_val": 24, "seg.eval_flip": True, "seg.eval_scales": (0.75, 1.0, 1.25)})
    config = tmp_path / "tiny.yaml"
    save_config(cfg, config)
    whole = _cism_run(config, tmp_path / "whole")
    assert whole.wait(timeout=900) == 0, whole.stderr.read()
    expected = pipeline.read_metrics(next((tmp_path / "whole").glob("*-*")))

    out = tmp_path / "killed"
    killed_in = []
    for stage, (pattern, count) in KILL_AT.items():
        rd = next(out.glob("*-*"), None)
        finished = {p.name: p.stat().st_mtime_ns for p in (rd / "stages").glob("*.json")} if rd else {}
        proc = _cism_run(config, out)
        while proc.poll() is None:
            rd = next(out.glob("*-*"), None)
            if rd is not None and _lines_or_files(rd, pattern) >= count:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        if proc.wait(timeout=900) == -signal.SIGKILL:
            killed_in.append(stage)
        rd = next(out.glob("*-*"))
        for name, mtime in finished.items():  # a finished stage is never run again
            assert (rd / "stages" / name).stat().st_mtime_ns == mtime, (stage, name)
    print("killed in:", killed_in)
    assert killed_in[:4] == list(KILL_AT)[:4]  # the scoring kill may come after a fast scoring
    final = _cism_run(config, out)
    assert final.wait(timeout=900) == 0, final.stderr.read()
    assert pipeline.read_metrics(next(out.glob("*-*"))) == expected

"""The real-tile screen: its runs (rows × seeds at the screening budget) and their summaries."""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cism_lib.config import SCORING_ONLY, RunConfig, replace
from cism_lib.display import cell
from cism_lib.errors import ConfigError, DataError
from cism_lib.experiments.profiles import CAM_STAGES, SCREEN_BUDGET, _load_profile, isaid_root, row_config
from cism_lib.experiments.records import merge_lines, read_history, run_record
from cism_lib.experiments.tables import SCREEN, SCREEN_REF, Row
from cism_lib.outputs import output_dir
from cism_lib.pipeline import curve_lines, run_all, score_cam_sources, score_curve
from cism_lib.runfolder import ISAID_ENV, RunFolder, train_history
from cism_lib.runtime import progress_bar


def screen_config(**overrides: Any) -> RunConfig:
    """The isaid512 preset on the real tiles (CISM_ISAID_ROOT) at SCREEN_BUDGET, then `overrides`."""
    root = isaid_root()
    if root is None or not (root / "train").is_dir():
        raise ConfigError(f"{ISAID_ENV}={root or '<unset>'}: the real-tile screen needs the iSAID patch "
                          "folder (with train/ and val/) named by this environment variable")
    return replace(_load_profile("isaid512"), **{**SCREEN_BUDGET, "data.root": str(root), **overrides})


# Values a screen line has columns for (its budget and threads); any other flag given to the screen
# is written in the line's `flags` (scoring-only ones left out: they change no weight).
_BUDGET_KEYS = ("data.max_train", "train.epochs", "cam.max_train", "threads")


def screen_flags(overrides: Mapping[str, Any]) -> str:
    """The flags a screen ran its rows with beyond their budget, as `key=value; ...` (sorted)."""
    def text(value: Any) -> str:
        return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)
    return "; ".join(f"{k}={text(v)}" for k, v in sorted(overrides.items())
                     if k not in _BUDGET_KEYS and k not in SCORING_ONLY)


def screen_row_name(label: str, flags: str) -> str:
    """A screen row as the summaries show it (lines through with_screen_budget): its label, and
    the flags it ran with in brackets."""
    return f"{label} [{flags}]" if flags else label


def run_screen(labels: Sequence[str] | None = None, seeds: Sequence[int] = (0, 1), progress: bool = True,
               cam_sources: Sequence[str] | None = None, **overrides: Any) -> pd.DataFrame:
    """Run (or reuse) the screen's rows (all, or those labelled `labels`) × seeds; one line per run.

    `cam_sources` (e.g. ("slsc", "product")): for runs with the separate SLSC scorer, also the CAMs
    from that scorer and/or from its product with W_c (pipeline.score_cam_sources; columns
    cam_miou_<split>_<source>).

    Seeds go round the rows (every row's seed 0, then every row's seed 1), so a screen cut short
    still has one seed of every row. Written to results/isaid512/screen_runs.csv after each run;
    a run with `train.curve_epochs` also writes its curve's lines to curve_runs.csv beside it.
    """
    known = {r.label: r for r in SCREEN}
    missing = [x for x in labels or () if x not in known]
    if missing:
        raise ConfigError(f"unknown screen row(s) {missing}; rows are {list(known)}")
    rows = [known[x] for x in labels] if labels else SCREEN
    base = screen_config(**overrides)
    path = output_dir("results", "isaid512") / "screen_runs.csv"
    curves = path.with_name("curve_runs.csv")
    records = []
    for seed, row in progress_bar([(s, r) for s in seeds for r in rows], desc="screen", disable=not progress):
        cfg = _screen_row_config(row, seed, base, known, progress)
        rd = run_all(cfg, stages=CAM_STAGES, progress=progress)
        last = read_history(rd).tail(1)  # the last epoch's per-loss backbone gradients (grad_probe)
        grads = {k: last[k].item() for k in last.columns if k.startswith("grad_")}
        m = cfg.model
        if cam_sources and m.method == "cism" and m.use_slsc and m.sl_scorer == "separate":
            scores = score_cam_sources(cfg, rd, sources=cam_sources, progress=progress)
            grads.update({k: v for k, v in scores.items() if k.startswith("cam_miou_")})
        budget = {"tiles": cfg.data.max_train, "epochs": cfg.train.epochs,
                  "cam_tiles": cfg.cam.max_train or cfg.data.max_train}
        records.append({**run_record("screen", row, seed, cfg, rd, report=cfg.data.val_split), **budget,
                        "flags": screen_flags(overrides), **grads})
        merge_lines(pd.DataFrame(records[-1:]), path, key=("run",))  # other rows, seeds and budgets stay
        if cfg.train.curve_epochs:  # its snapshots were scored as it trained; here they are read
            merge_lines(curve_lines(cfg, rd, score_curve(cfg, rd, score=())), curves, key=("run", "epoch"))
    return pd.DataFrame(records)


def _screen_row_config(row: Row, seed: int, base: RunConfig, known: Mapping[str, Row],
                       progress: bool = True) -> RunConfig:
    """A screen row's config; a train.init_from of "@screen:<label>" becomes that row's
    checkpoint for the same seed, trained first when it is not there yet."""
    ref = str(row.overrides.get("train.init_from") or "")
    if not ref.startswith(SCREEN_REF):
        return row_config(row, seed=seed, base=base, table="screen")
    label = ref[len(SCREEN_REF):]
    if label not in known or label == row.label:
        raise ConfigError(f"screen row {row.label!r}: train.init_from {ref!r} names no other screen row")
    source = run_all(_screen_row_config(known[label], seed, base, known, progress), stages=("train",),
                     progress=progress)
    checkpoint = str(RunFolder(source).checkpoint)
    resolved = dataclasses.replace(row, overrides={**row.overrides, "train.init_from": checkpoint})
    return row_config(resolved, seed=seed, base=base, table="screen")


SCREEN_METRICS = {"val mIoU": "cam_miou_val", "train mIoU": "cam_miou_train"}
SCREEN_GRADS = ("grad_norm_ml", "grad_norm_sl", "grad_cos_sl", "grad_norm_csm", "grad_cos_csm",
                "grad_norm_nsc", "grad_cos_nsc")


def with_screen_budget(runs: pd.DataFrame) -> pd.DataFrame:
    """The screen's lines with their budget columns filled: `tiles` and `epochs` (absent or NaN in
    lines from before those columns: the screen's 600 × 1) and `cam_tiles`, the first training
    tiles where the threshold was chosen (all the training tiles before that option)."""
    runs = runs.copy()
    for key, default in (("tiles", SCREEN_BUDGET["data.max_train"]), ("epochs", SCREEN_BUDGET["train.epochs"])):
        runs[key] = (runs[key] if key in runs.columns else pd.Series(math.nan, index=runs.index)).fillna(default)
    runs["cam_tiles"] = (runs["cam_tiles"] if "cam_tiles" in runs.columns else runs["tiles"]).fillna(runs["tiles"])
    runs["flags"] = (runs["flags"] if "flags" in runs.columns else pd.Series("", index=runs.index)).fillna("")
    return runs


def screen_per_class(runs: pd.DataFrame, root: Path | str = ".") -> pd.DataFrame:
    """One line per screen run (row, seed, budget) with its val mIoU, per-class val IoU (percent,
    from the run's metrics/cam_val.json) and its epoch-mean L_ml (the last epoch of
    train/log.jsonl): what the summary averages away. `run_dir` is read relative to `root` (the
    repository the runs were made in); a run whose folder is missing there is a DataError naming it."""
    lines = []
    for _, r in with_screen_budget(runs).iterrows():
        rd = Path(root) / str(r["run_dir"])
        metrics = RunFolder(rd).metrics("cam_val")
        if not metrics.is_file():
            raise DataError(f"{metrics}: no val CAM metrics for screen run {r['run']} (made in another checkout?)")
        m = json.loads(metrics.read_text())
        epochs = train_history(rd)
        line: dict[str, Any] = {"row": screen_row_name(r["row"], r["flags"]), "seed": int(r["seed"]),
                                "tiles × epochs": f"{int(r['tiles'])} × {int(r['epochs'])}",
                                "val mIoU": round(100 * m["miou"], 1),
                                "L_ml": round(epochs[-1]["ml"], 3) if epochs and "ml" in epochs[-1] else math.nan}
        line.update({name: round(100 * v, 1) for name, v in zip(m["class_names"], m["iou"], strict=True)})
        lines.append(line)
    return pd.DataFrame(lines)


def screen_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """The screen's lines (screen_runs.csv) per row and budget (training tiles × epochs): seeds,
    CAM mIoU (percent, mean ± std over seeds, val scored with the threshold chosen on the training
    tiles, and the reverse), its distance to the all-background line, the val mIoU of the CAMs from
    the SLSC scorer and from its product with W_c where scored (hypothesis 1), and the mean
    per-loss backbone gradient norms / cosines with L_ml of the last batch (train.grad_probe).
    Rows keep the order of experiments.SCREEN, smaller budgets first."""
    runs = with_screen_budget(runs)
    order = [r.label for r in SCREEN]

    def rank(kv: tuple) -> tuple:
        (label, tiles, epochs, _, flags), _ = kv
        return (tiles * epochs, order.index(label) if label in order else len(order), flags)

    def mean_std(values: pd.Series) -> str:
        return cell(100 * values.mean(), 100 * values.std(ddof=1) if len(values) > 1 else math.nan)

    lines = []
    groups = runs.groupby(["row", "tiles", "epochs", "cam_tiles", "flags"], sort=False)
    for (label, tiles, epochs, cam_tiles, flags), g in sorted(groups, key=rank):
        budget = f"{int(tiles)} × {int(epochs)}" + (f" (thr. on {int(cam_tiles)})" if cam_tiles != tiles else "")
        line: dict[str, Any] = {"row": screen_row_name(label, flags), "tiles × epochs": budget,
                                "seeds": ", ".join(str(int(s)) for s in sorted(g["seed"]))}
        for name, key in SCREEN_METRICS.items():
            line[name] = mean_std(g[key])
        line["val − all-BG"] = f"{100 * (g['cam_miou_val'] - g['all_background_miou_val']).mean():+.1f}"
        for source in ("slsc", "product"):
            key = f"cam_miou_val_{source}"
            if key in g.columns and g[key].notna().any():
                line[f"val mIoU, {source} CAM"] = mean_std(g[key].dropna())
        for key in SCREEN_GRADS:
            if key in g.columns and g[key].notna().any():
                line[key.replace("grad_", "")] = f"{g[key].mean():.2f}"
        lines.append(line)
    return pd.DataFrame(lines).fillna("–")

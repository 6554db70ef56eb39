"""Results lines: run records, summaries over seeds, the paper's tables beside ours, and results CSVs."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

import cism_lib
from cism_lib import display
from cism_lib.classes import ISAID
from cism_lib.config import RunConfig
from cism_lib.errors import ConfigError
from cism_lib.experiments.profiles import data_label
from cism_lib.experiments.tables import Row, table_rows
from cism_lib.outputs import ROOT, output_dir
from cism_lib.pipeline import scalar_metrics
from cism_lib.runfolder import RunFolder, train_history
from cism_lib.runtime import write_text_atomic

# CAM quality is reported on the training split (the WSSS convention: CAMs become the training
# pseudo-masks), with the background threshold selected on the val split.
CAM_METRICS = {"mIoU": "cam_miou_train", "OA": "cam_oa_train"}


def _protocol_columns(cfg: RunConfig, rd: Path, report: str | None = None) -> dict[str, Any]:
    """How a run's CAM metrics of split `report` (default train) were measured: split, threshold
    split, scales, flip, CRF."""
    train, val = cfg.data.train_split, cfg.data.val_split
    report = report or train
    path = RunFolder(rd).metrics(f"cam_{report}")
    proto = json.loads(path.read_text()).get("protocol", {}) if path.is_file() else {}
    return {"eval_split": proto.get("reported_split", report),
            "threshold_selected_on": proto.get("threshold_selected_on", val if report == train else train),
            "scales": ",".join(str(s) for s in (proto.get("scales") or cfg.cam.scales)),
            "flip": bool(proto.get("flip", cfg.cam.flip)), "crf": bool(proto.get("crf", False))}


def run_record(table: str, row: Row, seed: int, cfg: RunConfig, rd: Path,
               report: str | None = None) -> dict[str, Any]:
    """One line of a results frame: row, seed, run folder, data, protocol (of the CAM metrics of
    split `report`, default train) and scalar metrics."""
    metrics = scalar_metrics(rd)
    return {"table": table, "row": row.label, "seed": seed, "run": rd.name, "run_dir": _portable(rd),
            "data": data_label(cfg), **_protocol_columns(cfg, rd, report), **_compute_columns(rd), **metrics}


def _compute_columns(rd: Path) -> dict[str, Any]:
    """Torch threads, precision, Lite0's depthwise backward, the optimiser kernel and the processor
    of a run, from its versions.json (bf16 numbers depend on all five; runs recorded before the
    depthwise / fused options used aten / the per-parameter loop)."""
    path = RunFolder(rd).versions
    record = json.loads(path.read_text()) if path.is_file() else {}
    return {"threads": record.get("torch_threads"), "precision": record.get("precision", "fp32"),
            "depthwise_grad": record.get("depthwise_grad", "aten"),
            "fused_optimizer": bool(record.get("fused_optimizer", False)), "cpu": record.get("cpu")}


def _portable(path: Path) -> str:
    """`path` relative to the repository when it lies inside it (committed CSVs name no machine)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def read_history(rd: Path) -> pd.DataFrame:
    """The per-epoch training log `<run>/train/log.jsonl` as a frame (empty when absent)."""
    return pd.DataFrame(train_history(rd))


def per_class_iou(df: pd.DataFrame, stem: str = "cam_train") -> pd.DataFrame:
    """df plus one column per class (the paper's abbreviations) from `<run>/metrics/<stem>.json`."""
    out = df.copy()
    columns: dict[str, list[float]] = {a: [] for a in ISAID.abbrev}
    for rd in df["run_dir"]:
        path = RunFolder(ROOT / rd).metrics(stem)  # relative run_dir: under the repository
        m = json.loads(path.read_text()) if path.is_file() else {}
        by_name = dict(zip(m.get("class_names", []), m.get("iou", [])))
        for name, abbrev in zip(ISAID.names, ISAID.abbrev):
            value = by_name.get(name)
            columns[abbrev].append(math.nan if value is None else float(value))
    for abbrev, values in columns.items():
        out[abbrev] = values
    return out


DESCRIPTIVE = ("table", "data", "eval_split", "threshold_selected_on", "scales", "flip", "crf",
               "threads", "precision", "depthwise_grad", "fused_optimizer", "cpu")


def summarise(df: pd.DataFrame, metrics: Sequence[str], by: str = "row") -> pd.DataFrame:
    """Mean and sample std (ddof=1; NaN for one seed) of each metric over seeds, one line per row."""
    missing = [m for m in metrics if m not in df.columns]
    if missing:
        raise KeyError(f"metrics {missing} not in the frame (columns: {list(df.columns)})")
    groups = df.groupby(by, sort=False)
    out = pd.DataFrame({"n_seeds": groups.size()})
    for m in metrics:
        out[m] = groups[m].mean()
        out[f"{m}_std"] = groups[m].std(ddof=1)
    for col in DESCRIPTIVE:
        if col in df.columns:
            out[col] = groups[col].first()
    return out.reset_index()


def paper_table(name: str) -> pd.DataFrame:
    """The paper's numbers (percent) for 'table1'..'table8', from cism_lib/paper_tables/."""
    folder = Path(cism_lib.__file__).resolve().parent / "paper_tables"
    hits = sorted(folder.glob(f"{name}_*.csv"))
    if not hits:
        raise ConfigError(f"no paper table {name!r} in {folder}")
    return pd.read_csv(hits[0])


def protocol_text(line: Mapping[str, Any]) -> str:
    """A one-line protocol description of a summarised row."""
    if not isinstance(line.get("eval_split"), str):
        return "not run"
    flip = " + flip" if line.get("flip") else ""
    crf = "CRF" if line.get("crf") else "no CRF"
    n = int(line.get("n_seeds", 0))
    return (f"{line['eval_split']} split, threshold selected on {line['threshold_selected_on']}, "
            f"scales {line['scales']}{flip}, {crf}, {n} seed{'s' if n != 1 else ''}")


def _summary(ours: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Accept raw run_rows output or a summarise() frame; return the summary indexed by row."""
    present = [m for m in metrics if m in ours.columns]
    if ours.empty:
        return pd.DataFrame(columns=["n_seeds", *present]).rename_axis("row")
    summary = summarise(ours, present) if "seed" in ours.columns else ours
    return summary.set_index("row")


def compare(table: str, ours: pd.DataFrame, metrics: Mapping[str, str] | None = None,
            report: str = "train") -> pd.DataFrame:
    """Paper and ours side by side for Tables 4-8 (percent); rows we did not run are NaN.
    Tables 1 and 2 (compare_table1 / compare_table2) use the CAM scores of split `report`."""
    if table in ("table1", "table2"):
        return compare_table1(ours, report) if table == "table1" else compare_table2(ours, report)
    metrics = dict(metrics or CAM_METRICS)
    paper = paper_table(table)
    summary = _summary(ours, list(metrics.values()))
    lines = []
    for row in table_rows(table):
        line: dict[str, Any] = {"row": row.label}
        for name in metrics:
            line[f"paper {name}"] = (float(paper.iloc[row.paper][name])
                                     if row.paper is not None and name in paper.columns else math.nan)
        got = summary.loc[row.label] if row.label in summary.index else {}
        for name, key in metrics.items():
            line[f"ours {name}"] = 100 * float(got.get(key, math.nan))
            line[f"ours {name} std"] = 100 * float(got.get(f"{key}_std", math.nan))
        line["n_seeds"] = int(got.get("n_seeds", 0))
        line["data"] = got.get("data", "not run")
        line["protocol"] = protocol_text({**dict(got), "n_seeds": line["n_seeds"]})
        lines.append(line)
    return pd.DataFrame(lines)


def compare_table1(ours: pd.DataFrame, report: str = "train") -> pd.DataFrame:
    """Per-class IoU (percent): the paper's line and ours for CAM, CIAN and CISM (NaN if absent).

    `ours` must carry the class columns of `per_class_iou` (raw or summarised) of the CAM scores
    of split `report`; mIoU is its cam_miou_<report>.
    """
    paper = paper_table("table1")
    cols = [*ISAID.abbrev, "mIoU"]
    src = ours.rename(columns={f"cam_miou_{report}": "mIoU"}) if not ours.empty else ours
    summary = _summary(src, cols)
    lines = []
    for row in table_rows("table1"):
        p = paper.iloc[row.paper] if row.paper is not None else {}
        lines.append({"model": row.label, "source": "paper", "data": "iSAID (paper)",
                      "protocol": "as published", "n_seeds": math.nan,
                      **{c: float(p.get(c, math.nan)) for c in cols}})
        got = summary.loc[row.label] if row.label in summary.index else {}
        n = int(got.get("n_seeds", 0))
        lines.append({"model": row.label, "source": "ours", "data": got.get("data", "not run"),
                      "protocol": protocol_text({**dict(got), "n_seeds": n}), "n_seeds": n,
                      **{c: 100 * float(got.get(c, math.nan)) for c in cols}})
    return pd.DataFrame(lines)


def compare_table2(ours: pd.DataFrame, report: str = "train") -> pd.DataFrame:
    """Image-level rows of Table 2 (DeepLab mIoU) beside our chain (percent): the CAMs (split
    `report`), the pseudo-masks (train) and DeepLab (val), mIoU and OA."""
    paper = paper_table("table2")
    weak = paper[paper["supervision"] == "W(I)"].set_index("model")["mIoU"]
    keys = {"CAM mIoU": f"cam_miou_{report}", "CAM OA": f"cam_oa_{report}",
            "pseudo mIoU": "pseudo_miou_train", "pseudo OA": "pseudo_oa_train",
            "DeepLab mIoU": "seg_miou_val", "DeepLab OA": "seg_oa_val"}
    summary = _summary(ours, list(keys.values()))
    lines = []
    for row in table_rows("table1"):
        got = summary.loc[row.label] if row.label in summary.index else {}
        line = {"model": row.label, "paper DeepLab mIoU": float(weak.get(row.label, math.nan))}
        for name, key in keys.items():
            line[f"ours {name}"] = 100 * float(got.get(key, math.nan))
            line[f"ours {name} std"] = 100 * float(got.get(f"{key}_std", math.nan))
        line["n_seeds"] = int(got.get("n_seeds", 0))
        line["data"] = got.get("data", "not run")
        lines.append(line)
    return pd.DataFrame(lines)


def write_table(df: pd.DataFrame, name: str, profile: str) -> Path:
    """Write a table as results/[<profile>/]<name>.csv (fixed float format, no index)."""
    return write_csv(df, output_dir("results", profile) / f"{name}.csv")


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """A results CSV, written atomically: fixed float format, no index."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, df.to_csv(index=False, float_format="%.4f"))
    return path


def merge_lines(new: pd.DataFrame, path: Path, key: Sequence[str]) -> Path:
    """Write `new` into the results CSV at `path`: its lines replace those with the same `key`
    values, every other line stays (those another process wrote meanwhile too)."""
    old = pd.read_csv(path) if path.is_file() else new.iloc[:0]
    same = old.set_index(list(key)).index.isin(new.set_index(list(key)).index) if len(old) else []
    return write_csv(pd.concat([old[~same] if len(old) else old, new], ignore_index=True), path)


def styled(df: pd.DataFrame, digits: int = 1, caption: str | None = None) -> Any:
    """A compare() frame as a reader sees it (display.table): percent cells, "mean ± std", every
    column, no index, data and protocol as the caption (the CSV keeps full precision)."""
    return display.table(df, caption=caption, digits=digits)


def metrics_frame(folders: Mapping[str, Path]) -> pd.DataFrame:
    """The scalar metrics of several run folders, one line per run."""
    return pd.DataFrame({name: scalar_metrics(rd) for name, rd in folders.items()}).T

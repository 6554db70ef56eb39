"""Tables as a reader sees them in a notebook: percentages, "mean ± std" cells, short headers,
every column, the data and protocol as a caption, and a written reading of a comparison table.

The CSVs under results/ keep full precision and the long column names; this module only shapes
what a notebook (and its HTML rendering) shows. `view` returns the formatted cells as a plain
DataFrame of strings (testable, printable anywhere); `table` wraps it in a pandas Styler (needs
jinja2, installed with the notebooks extra) with the caption and no index.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

DASH = "–"  # a cell with no value (a row not run, a paper value not published)
# Columns that describe a whole table rather than one cell: moved into the caption when constant.
CAPTION_COLUMNS = ("data", "protocol")
# Run-table metric columns (fractions) and their short headers.
RUN_METRICS: dict[str, str] = {
    "cam_miou_train": "CAM mIoU train", "cam_oa_train": "CAM OA train",
    "cam_miou_val": "CAM mIoU val", "cam_oa_val": "CAM OA val",
    "all_background_miou_train": "all-BG mIoU train", "all_background_miou_val": "all-BG mIoU val",
    "pseudo_miou_train": "pseudo mIoU train", "pseudo_oa_train": "pseudo OA train",
    "seg_miou_val": "DeepLab mIoU val", "seg_oa_val": "DeepLab OA val",
}
# The background threshold each split was scored with (chosen on the other split).
RUN_PLAIN = {"cam_threshold_train": "BG thr, train", "cam_threshold_val": "BG thr, val"}
RUN_KEEP = ("row", "seed", "run", "precision", "threads", "depthwise_grad", "fused_optimizer")


def cell(mean: float, std: float = math.nan, digits: int = 1) -> str:
    """'23.9 ± 0.1', '23.9' (one seed: no spread), or '–' (no value)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return DASH
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _number(v: Any) -> float:
    """v as a float, NaN when it is not a number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _strip_seeds(protocol: str) -> str:
    """A protocol string without its ', N seeds' tail (the seeds column carries it per row)."""
    return re.sub(r",\s*\d+ seeds?$", "", str(protocol))


def _ran(df: pd.DataFrame) -> pd.DataFrame:
    """The rows we ran (not 'not run', not the paper's own lines of Table 1)."""
    if "data" not in df.columns:
        return df
    data = df["data"].astype(str)
    return df[(data != "not run") & ~data.str.endswith("(paper)")]


def caption_of(df: pd.DataFrame, extra: str = "") -> str:
    """The table's data and protocol (those of the rows that ran), as one caption line."""
    parts = []
    ran = _ran(df)
    for col in CAPTION_COLUMNS:
        if col in ran.columns:
            values = [v for v in dict.fromkeys(map(str, ran[col])) if v not in ("nan", "as published")]
            if col == "protocol":
                values = list(dict.fromkeys(_strip_seeds(v) for v in values))
            if values:
                parts.append(("ours: " if col == "data" else "") + "; ".join(values))
    if extra:
        parts.append(extra)
    return " — ".join(parts)


def view(df: pd.DataFrame, digits: int = 1, drop_empty: bool = True) -> pd.DataFrame:
    """The cells of a comparison table (numbers already in percent) as display strings.

    A column "X" with a companion "X std" becomes one "X" column of "mean ± std" cells; NaN shows
    as '–'; `n_seeds` becomes "seeds"; the data/protocol columns are left out (they go into the
    caption, see `caption_of`), except when they differ between rows that ran, where `data` stays.
    Rows whose numbers are all missing (e.g. a paper line the paper did not publish) are dropped.
    """
    numeric = [c for c in df.columns if c not in CAPTION_COLUMNS and not c.endswith(" std")
               and c != "n_seeds" and pd.api.types.is_numeric_dtype(df[c])]
    if drop_empty and numeric:
        df = df[df[numeric].notna().any(axis=1)]
    out = pd.DataFrame(index=df.index)
    for c in df.columns:
        if c.endswith(" std") or c in CAPTION_COLUMNS:
            continue
        if c == "n_seeds":
            out["seeds"] = [DASH if math.isnan(_number(v)) or _number(v) == 0 else str(int(_number(v)))
                            for v in df[c]]
        elif c in numeric:
            std = df[f"{c} std"] if f"{c} std" in df.columns else [math.nan] * len(df)
            out[c] = [cell(_number(m), _number(s), digits) for m, s in zip(df[c], std)]
        else:
            out[c] = df[c].astype(str)
    if "data" in df.columns and _ran(df)["data"].nunique() > 1:
        out["data"] = df["data"].astype(str)
    return out.reset_index(drop=True)


def table(df: pd.DataFrame, caption: str | None = None, digits: int = 1) -> Any:
    """A comparison table for a notebook: `view`'s cells, no index, the data/protocol as caption.

    A pandas Styler when jinja2 is installed (HTML in JupyterLab and nbconvert), else the string
    frame of `view`.
    """
    cells = view(df, digits)
    text = caption if caption is not None else caption_of(df)
    try:
        import jinja2  # noqa: F401  (pandas' Styler renders through it)
    except ImportError:
        return cells
    styler = cells.style.hide(axis="index")
    if text:
        styler = styler.set_caption(text)
    return styler.set_table_styles([
        {"selector": "caption", "props": "caption-side: bottom; text-align: left; font-size: 0.85em;"},
        {"selector": "th", "props": "text-align: center;"},
        {"selector": "td", "props": "text-align: right; white-space: nowrap;"},
    ])


def runs_view(runs: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """A run table (one line per run, metrics as fractions) in percent with short headers.

    Keeps the row, seed, run id, precision and thread count, the thresholds and the metrics the
    runs have; the run folder and the protocol columns are left out (`caption_of` the compare
    frame carries them).
    """
    keep = [c for c in RUN_KEEP if c in runs.columns]
    out = runs[keep].copy()
    for key, name in RUN_PLAIN.items():
        if key in runs.columns:
            out[name] = runs[key].map(lambda v: DASH if math.isnan(_number(v)) else f"{_number(v):.2f}")
    for key, name in RUN_METRICS.items():
        if key in runs.columns:
            out[name] = [cell(100 * _number(v), digits=digits) for v in runs[key]]
    return out.reset_index(drop=True)


def metrics_view(metrics: Mapping[str, Mapping[str, Any]] | pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """Scalar metrics of several runs ({name: metrics} or metrics_frame's frame) in percent, short headers."""
    frame = metrics if isinstance(metrics, pd.DataFrame) else pd.DataFrame(metrics).T
    frame = frame.rename_axis("run").reset_index()
    return runs_view(frame, digits)


def reading(df: pd.DataFrame, metric: str = "mIoU", baseline: int = 0) -> str:
    """A written reading of a compare() frame of Tables 4-8, as Markdown.

    For each row: the paper's and our change of `metric` against the baseline row (the first),
    whether ours goes the paper's way, and whether our change exceeds the seed spread (it needs
    two seeds on both rows; one seed is an observation). Generated from the numbers shown, so it
    is never out of date with them.
    """
    paper_col, ours_col, std_col = f"paper {metric}", f"ours {metric}", f"ours {metric} std"
    if ours_col not in df.columns or len(df) < 2:
        return f"*No reading: the table has no `{ours_col}` column or a single row.*"
    base = df.iloc[baseline]
    lines = [f"Changes of {metric} (points) against **{base['row']}** "
             f"(paper {cell(_number(base.get(paper_col)))}, ours {cell(_number(base[ours_col]))}):", ""]
    for i, line in df.iterrows():
        if i == baseline:
            continue
        lines.append(f"- **{line['row']}**: " + _row_reading(line, base, paper_col, ours_col, std_col))
    lines += ["", _seed_note(df)]
    return "\n".join(lines)


def _row_reading(line: pd.Series, base: pd.Series, paper_col: str, ours_col: str, std_col: str) -> str:
    """One row's sentence of `reading`."""
    p = _number(line.get(paper_col)) - _number(base.get(paper_col))
    o = _number(line[ours_col]) - _number(base[ours_col])
    paper = DASH if math.isnan(p) else f"{p:+.1f}"
    if math.isnan(o):
        return f"paper {paper}; ours not run in this profile."
    text = f"paper {paper}, ours {o:+.1f}"
    if not math.isnan(p):
        text += " (same direction)" if p * o > 0 else " (opposite direction)" if p * o < 0 else ""
    spread = [_number(line.get(std_col)), _number(base.get(std_col))]
    if any(math.isnan(s) for s in spread):
        text += "; one seed on a side: an observation, not a finding."
    else:
        noise = math.hypot(*spread)
        text += (f"; beyond the seed spread (±{noise:.1f})." if abs(o) > 2 * noise
                 else f"; within the seed spread (±{noise:.1f}).")
    return text


def _seed_note(df: pd.DataFrame) -> str:
    """The closing line of `reading`: how many seeds the rows have."""
    seeds = [int(_number(n)) for n in df.get("n_seeds", []) if not math.isnan(_number(n))]
    ran = [n for n in seeds if n > 0]
    if not ran:
        return "*No row ran in this profile.*"
    return (f"*Seeds per row: {min(ran)}–{max(ran)}. A difference counts as a finding when it exceeds "
            "twice the combined standard deviation of two rows with ≥ 2 seeds each.*")


NUMERIC = re.compile(r"^[\d.,+\-–±/ ]*$")  # a cell of numbers: "23.4 ± 0.1", "+1.4", "0, 1", "– / –"


def markdown_table(df: pd.DataFrame) -> str:
    """A frame as a GitHub Markdown table: the first column and columns of text left-aligned,
    columns of numbers right-aligned (cells as they are)."""
    cols = [str(c) for c in df.columns]
    align = ["---:" if i and all(NUMERIC.match(str(v)) for v in df[c]) else "---" for i, c in enumerate(df.columns)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)])


def markdown(text: str) -> Any:
    """`text` as an IPython Markdown object (rendered in a notebook), or the text outside IPython."""
    try:
        from IPython.display import Markdown
    except ImportError:
        return text
    return Markdown(text)


def reading_table1(df: pd.DataFrame) -> str:
    """A written reading of compare_table1's frame (per-class IoU, percent), as Markdown.

    Our mIoU per model beside the paper's, whether the paper's ordering CAM < CIAN < CISM holds in
    ours, and the classes where CISM beats CIAN (ours and the paper's).
    """
    classes = [c for c in df.columns if c not in ("model", "source", "data", "protocol", "n_seeds", "mIoU")]
    ours = df[df["source"] == "ours"].set_index("model")
    paper = df[df["source"] == "paper"].set_index("model")
    ran = [m for m in ours.index if not math.isnan(_number(ours.loc[m, "mIoU"]))]
    if not ran:
        return "*No model ran in this profile.*"
    lines = ["mIoU of the CAMs (ours; the paper's in brackets): " + ", ".join(
        f"**{m}** {_number(ours.loc[m, 'mIoU']):.1f} ({cell(_number(paper['mIoU'].get(m, math.nan)))})"
        for m in ran) + "."]
    order = sorted(ran, key=lambda m: _number(ours.loc[m, "mIoU"]))
    lines.append(f"Ours ranks them {' < '.join(order)}; the paper's ordering is CAM < CIAN < CISM.")
    if {"CIAN", "CISM"} <= set(ran):
        wins = [c for c in classes if _number(ours.loc["CISM", c]) > _number(ours.loc["CIAN", c])]
        pwins = [c for c in classes if _number(paper.loc["CISM", c]) > _number(paper.loc["CIAN", c])] \
            if {"CIAN", "CISM"} <= set(paper.index) else []
        lines.append(f"CISM above CIAN in {len(wins)} of {len(classes)} classes here ({', '.join(wins) or 'none'}); "
                     f"in the paper in {len(pwins)} ({', '.join(pwins) or 'none'}).")
    seeds = [int(_number(n)) for n in ours["n_seeds"] if not math.isnan(_number(n))]
    if seeds and min(seeds) < 2:
        lines.append("*One seed per model: an observation, not a finding.*")
    return " ".join(lines)


def figure_reading(samples: Sequence[Mapping[str, Any]]) -> str:
    """A written reading of a CAM figure (experiments.cam_examples samples), as Markdown: each
    CAM column's mean IoU, over the images shown, of the class each image shows."""
    scores: dict[str, list[float]] = {}
    for sample in samples:
        for title, note in sample.get("notes", {}).items():
            hit = re.search(r"IoU (-?[\d.]+)$", str(note))
            if title.endswith(" CAM") and hit:
                scores.setdefault(title[:-4], []).append(float(hit.group(1)))
    if not scores:
        return "*No CAM scores in these panels.*"
    means = {name: sum(v) / len(v) for name, v in scores.items()}
    best = max(means, key=means.get)
    return (f"Mean IoU of the shown class over these {len(samples)} images: "
            + ", ".join(f"**{n}** {m:.1f}" for n, m in means.items())
            + f". Highest here: {best}. {len(samples)} hand-picked images (those with the most classes) are "
            "an illustration; the tables measure the whole split.")


def reading_table2(df: pd.DataFrame) -> str:
    """A written reading of compare('table2')'s frame (pseudo-masks and DeepLab, percent), as Markdown:
    each model's pseudo-mask and DeepLab mIoU (the paper's DeepLab in brackets), the two orderings,
    and whether DeepLab rose above the pseudo-masks it learned from (the paper's Table 2 pattern)."""
    need = {"model", "ours pseudo mIoU", "ours DeepLab mIoU"}
    if not need <= set(df.columns):
        return f"*No reading: the table lacks {sorted(need - set(df.columns))}.*"
    rows = {str(r["model"]): r for _, r in df.iterrows()
            if not math.isnan(_number(r["ours pseudo mIoU"])) or not math.isnan(_number(r["ours DeepLab mIoU"]))}
    if not rows:
        return "*No model ran the whole chain in this profile.*"
    pseudo = {m: _number(r["ours pseudo mIoU"]) for m, r in rows.items()}
    seg = {m: _number(r["ours DeepLab mIoU"]) for m, r in rows.items()}
    lines = ["Pseudo-mask mIoU on the training split / DeepLab mIoU on val (ours; the paper's DeepLab in "
             "brackets): " + ", ".join(
                 f"**{m}** {cell(pseudo[m])} / {cell(seg[m])} ({cell(_number(r.get('paper DeepLab mIoU')))})"
                 for m, r in rows.items()) + "."]
    for name, values in (("pseudo-masks", pseudo), ("DeepLab", seg)):
        ran = [m for m in values if not math.isnan(values[m])]
        if len(ran) > 1:
            lines.append(f"Ours ranks the {name} {' < '.join(sorted(ran, key=values.get))}.")
    both = [m for m in rows if not (math.isnan(pseudo[m]) or math.isnan(seg[m]))]
    above = [m for m in both if seg[m] > pseudo[m]]
    if both:
        lines.append(f"DeepLab above the pseudo-masks it learned from for {len(above)} of {len(both)} models"
                     + (f" ({', '.join(above)})" if above else "")
                     + " (the splits differ: masks scored on train, DeepLab on val); in the paper, DeepLab "
                     "on CISM's masks ends above CISM's CAMs (its Table 2 against Table 1).")
    seeds = [int(_number(n)) for n in df.get("n_seeds", []) if not math.isnan(_number(n))]
    if seeds and min(seeds) < 2:
        lines.append("*One seed per model: an observation, not a finding.*")
    return " ".join(lines)


def category_shift(shift: pd.DataFrame) -> pd.DataFrame:
    """The long categories-per-query table of Figure 6 (n_categories, images, fraction, dataset)
    as one row per category count and one column per distribution, in percent."""
    wide = shift.pivot(index="n_categories", columns="dataset", values="fraction") * 100
    wide = wide[list(dict.fromkeys(shift["dataset"]))]  # the distributions in their given order
    wide.columns.name = None
    return wide.round(1).rename_axis("categories per query")


def reading_figure6(shift: pd.DataFrame) -> str:
    """A written reading of Figure 6's distributions (category_shift's input), as Markdown: the
    share of queries with 1-2 and with 4+ categories before and with MCSG."""
    wide = category_shift(shift)
    if wide.shape[1] != 2:
        return "*No reading: Figure 6 compares exactly two distributions.*"
    (a, before), (b, after) = wide.items()
    low = [k for k in wide.index if str(k) in ("1", "2")]
    high = [k for k in wide.index if str(k) not in ("0", "1", "2", "3")]
    return (f"Queries with 1-2 categories: {before[low].sum():.1f} % {a} → {after[low].sum():.1f} % {b}; "
            f"with 4 or more: {before[high].sum():.1f} % → {after[high].sum():.1f} %. "
            + ("MCSG moves mass towards multi-category queries, as the paper's Figure 6 shows."
               if after[high].sum() > before[high].sum() else
               "MCSG does not add multi-category queries here, unlike the paper's Figure 6."))


__all__ = ["cell", "view", "table", "caption_of", "runs_view", "metrics_view", "reading", "reading_table1",
           "reading_table2", "figure_reading", "category_shift", "reading_figure6", "markdown",
           "markdown_table", "DASH"]

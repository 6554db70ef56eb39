"""The paper's experiments as data: every row of Tables 1, 4-8 as config overrides, run and summarised.

A table row is a set of dotted overrides (`{"model.method": "cian"}`) applied to the profile's
config; `run_rows` runs each row for each seed through `pipeline.run_all` (finished runs are
reused by config hash, so a row shared by two tables runs once), `summarise` gives mean ± std
over seeds and `compare` puts our numbers beside the paper's (bundled in
`cism_lib/paper_tables/`). Rows that were not run are NaN: a paper value is never copied into
our columns.

How each ablation is expressed with the model's switches (see `cism_lib/models/cism.py`: the
prototype vectors only act through SLSC or the CSM/NSC heads, and SLSC only exists for `cism`):
- Table 4: baseline = CIAN; +PV = CISM without PIE and SLSC (PV feeds the CSM/NSC heads);
  +PV+PIE = CISM without SLSC (the same run as Table 6's "CISM" row).
- Table 5: full CISM with eta 0.1/0.3/0.5/0.7 (eta 0.3 is the default CISM run).
- Table 6: CIAN ± SLSC (CIAN + SLSC = CISM with PV, PIE, CSM and NSC off), RPNet-like = CISM
  without PIE, CSM and NSC (± SLSC), CISM ± SLSC.
- Table 7: CIAN and CISM, each without and with MCSG.
- Table 8: loss subsets of CISM trained with MCSG (the paper's "all losses" row, 34.1, is its
  CISM + MCSG of Table 7). A row without L_sl switches SLSC off.
- Table 1: CAM, CIAN and CISM; per-class IoU of the training-split CAMs (Tables 1-2 analogues
  add pseudo-mask and DeepLab mIoU when the pseudo and segment stages are run).

Budgets per profile (`PLANS`): smoke runs 1-3 rows per table (4 distinct runs in all, shared
across notebooks), 1 seed, 2 epochs on 48 images; cpu runs every row, 1 seed, with 3 seeds for the two rows
everything is compared against (baseline CIAN and full CISM) in Tables 4-8 and 1 seed through
the whole chain in Table 1; paper runs every row with 3 seeds.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import cism_lib
from cism_lib.classes import ISAID
from cism_lib.config import PROFILES, CrfConfig, RunConfig, load_config, replace
from cism_lib.errors import ConfigError, DataError
from cism_lib.outputs import ROOT, output_dir
from cism_lib.runfolder import ISAID_ENV, RunFolder, train_history
from cism_lib.runtime import HEADLESS_ENV

PROFILE_ENV = "CISM_PROFILE"
CAM_STAGES = ("train", "cams", "eval")
DATA_LABELS = {"synthetic": "SynthAerial (synthetic)", "isaid": "iSAID tiles (real)",
               "voc": "PASCAL VOC 2012 (real)"}
# CAM quality is reported on the training split (the WSSS convention: CAMs become the training
# pseudo-masks), with the background threshold selected on the val split.
CAM_METRICS = {"mIoU": "cam_miou_train", "OA": "cam_oa_train"}


# ----------------------------------------------------------------------------- profiles
def repo_root() -> Path:
    """The repository folder (holding configs/, results/, figures/), found from cism_lib's location."""
    return ROOT


def interactive(flag: bool | None = None) -> bool:
    """Whether a notebook should build ipywidgets: `flag`, or else not under CISM_HEADLESS=1."""
    return flag if flag is not None else os.environ.get(HEADLESS_ENV, "") != "1"


def current_profile(default: str = "cpu") -> str:
    """The profile named by the CISM_PROFILE environment variable (default cpu)."""
    profile = os.environ.get(PROFILE_ENV, default) or default
    if profile not in PROFILES:
        raise ConfigError(f"{PROFILE_ENV}={profile!r}: choose one of {PROFILES}")
    return profile


def _load_profile(profile: str) -> RunConfig:
    """configs/<profile>.yaml with its run folder anchored at the repository root."""
    path = ROOT / "configs" / f"{profile}.yaml"
    if not path.is_file():
        presets = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
        raise ConfigError(f"{path}: no such preset; choose one of {presets}")
    cfg = load_config(path)
    if not Path(cfg.out_dir).is_absolute():
        cfg = replace(cfg, out_dir=str(ROOT / cfg.out_dir))
    return cfg


def profile_config(profile: str = "cpu") -> RunConfig:
    """configs/<profile>.yaml with its run and SynthAerial folders anchored at the repository root."""
    return _anchor_synthetic(_load_profile(profile))


def _anchor_synthetic(cfg: RunConfig) -> RunConfig:
    """Give SynthAerial an absolute folder under the repository (the default is cwd-relative, and
    notebooks run in notebooks/); $CISM_DATA_DIR still wins when it is absolute."""
    d = cfg.data
    if d.dataset != "synthetic" or d.root:
        return cfg
    from cism_lib.data.synthetic import default_root

    root = default_root(d.synth_size, d.synth_seed, d.synth_train, d.synth_val)
    return replace(cfg, **{"data.root": str(root if root.is_absolute() else ROOT / root)})


@dataclass(frozen=True)
class Plan:
    """How much of the tables a profile runs: shared overrides, seeds and row subsets."""

    overrides: Mapping[str, Any] = field(default_factory=dict)
    real_overrides: Mapping[str, Any] = field(default_factory=dict)  # for the real iSAID tiles
    seeds: int = 1                       # seeds of an ordinary row
    key_seeds: int = 1                   # seeds of the rows marked key (baseline, full CISM)
    rows: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # table -> labels to run
    max_seeds: Mapping[str, int] = field(default_factory=dict)  # table -> cap on seeds per row
    table_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # table -> budget
    # Table 1/2's pseudo-masks and DeepLab as a chain of each classifier run (pipeline.run_chain)
    # with these cam.max_train / crf.* / seg.* overrides, for the rows of chain_rows (None: all;
    # a row's own overrides, e.g. its CRF, are added to `chain`); None: the runs' own pseudo /
    # segment stages (a seg-enabled run, as the synthetic profiles)
    chain: Mapping[str, Any] | None = None
    chain_rows: Mapping[str, Mapping[str, Any]] | None = None
    report: str = "train"                # Table 1's CAM split: train (threshold from val) or val


# The real-tile screening budget (docs/results.md, "The screening budget"): 600 tiles, one epoch.
SCREEN_BUDGET: dict[str, Any] = {"data.max_train": 600, "train.epochs": 1, "seg.enabled": False,
                                 "train.grad_probe": True}
# The full real-tile budget of the CISM issue (`cism screen --tiles 2300 --cam-tiles 300`): every
# training tile for one epoch, CAMs of the first 300 (where val's threshold is chosen); the same
# folders as those screen runs.
FULL_BUDGET: dict[str, Any] = {**SCREEN_BUDGET, "data.max_train": 2300, "cam.max_train": 300}
# The real-tile chain: pseudo-masks of every training tile, then DeepLabV3 on Lite0 at 256² crops
# for 12 epochs (where LargeFOV's curve flattened, and the head that measured best on the plain
# CAM's masks), its val curve on the first 200 val tiles, scored on all val tiles single scale and
# with a flip (docs/results.md, "Real iSAID tiles: the chain").
REAL_CHAIN: dict[str, Any] = {"cam.max_train": None, "seg.crop_size": 256, "seg.epochs": 12,
                              "seg.head": "deeplabv3", "seg.curve_images": 200, "seg.eval_flip": True}
# Each method's CRF: the setting that measured best on its first 300 training tiles' ground truth
# (the tiles where the threshold is chosen; docs/results.md, "The chain: CRF choice"). The plain
# CAM: IRN's label unary and bilateral kernel (sxy 50 / srgb 5); CISM: the probability unary and
# the library's kernel.
REAL_CRF: dict[str, dict[str, Any]] = {
    "CAM": {"crf.unary": "label", "crf.bi_sxy": 50.0, "crf.bi_srgb": 5.0},
    "CISM": {"crf.unary": "prob"},
}


PLANS: dict[str, Plan] = {
    # smoke: 4 distinct classifier runs in all (CIAN, CISM, CISM without SLSC, CISM + MCSG) on 48
    # training images for 2 epochs, shared by every notebook; Table 1 adds the whole chain for 2.
    "smoke": Plan(overrides={"train.epochs": 2, "seg.epochs": 1, "data.max_train": 48, "data.max_val": 24},
                  real_overrides={"train.epochs": 1, "seg.epochs": 1, "data.max_train": 32,
                                  "data.max_val": 16, "data.crop_size": 128, "data.workers": 0,
                                  "seg.crop_size": 128, "cam.scales": (1.0,), "device": "cpu"},
                  rows={"table1": ("CIAN", "CISM"), "table4": ("Baseline (CIAN)", "+PV+PIE"),
                        "table5": ("eta=0.3",), "table6": ("CIAN", "CISM", "CISM +SLSC"),
                        "table7": ("Baseline (CIAN)", "CISM", "CISM +MCSG"),
                        "table8": ("ml+sl+csm+nsc",)}),
    # cpu: 19 distinct classifier runs (CAM, CIAN x2, CISM x2 and 14 ablation rows), the whole
    # chain (pseudo-masks + DeepLab) for the 3 runs of Table 1; Table 1 itself uses seed 0 only.
    "cpu": Plan(real_overrides={"data.max_train": 400, "data.max_val": 200, "train.epochs": 3,
                                "data.workers": 0, "device": "cpu"},
                seeds=1, key_seeds=2, max_seeds={"table1": 1}),
    "paper": Plan(seeds=3, key_seeds=3),
    # isaid512: the real tiles (CISM_ISAID_ROOT) at configs/isaid512.yaml's budget (all 2300
    # training tiles, one epoch of 384 px pairs, DeepLab 12 epochs) for Table 1/2 and the figures;
    # the ablation tables run their baseline and CISM rows at the screening budget (600 tiles,
    # one epoch); its cost: docs/results.md, "Speed".
    "isaid512": Plan(seeds=1, key_seeds=1,
                     rows={"table4": ("Baseline (CIAN)", "+PV", "+PV+PIE"), "table5": ("eta=0.3",),
                           "table6": ("CIAN", "CISM", "CISM +SLSC"),
                           "table7": ("Baseline (CIAN)", "CISM", "CISM +MCSG"),
                           "table8": ("ml", "ml+sl+csm+nsc")},
                     table_overrides={"table1": FULL_BUDGET,
                                      **{t: SCREEN_BUDGET for t in ("table4", "table5", "table6", "table7", "table8")}},
                     chain=REAL_CHAIN, chain_rows=REAL_CRF, report="val"),
}
# Profiles whose own data are real tiles: their notebooks skip the extra "real tiles" cells.
REAL_PROFILES = ("paper", "isaid512")


def plan_for(profile: str) -> Plan:
    """The budget of a profile, or a ConfigError naming the profiles."""
    if profile not in PLANS:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    return PLANS[profile]


def experiment_config(profile: str = "cpu", real: bool = False, **overrides: Any) -> RunConfig:
    """The profile's config with its plan's overrides (what every notebook runs), then `overrides`.

    `real=True` starts from the `isaid512` preset (data from CISM_ISAID_ROOT) with the profile's
    real-data budget.
    """
    plan = plan_for(profile)
    if real:
        cfg = replace(_load_profile("isaid512"), out_dir=_load_profile(profile).out_dir)
        return replace(cfg, **{**plan.real_overrides, **overrides})
    return _anchor_synthetic(replace(_load_profile(profile), **{**plan.overrides, **overrides}))


def data_label(cfg: RunConfig) -> str:
    """What a run's numbers were measured on, for table captions."""
    return DATA_LABELS.get(cfg.data.dataset, cfg.data.dataset)


def isaid_root() -> Path | None:
    """The real iSAID patch folder named by CISM_ISAID_ROOT, or None."""
    root = os.environ.get(ISAID_ENV)
    return Path(root) if root else None


def extra_real_root(profile: str) -> Path | None:
    """The real tiles for a notebook's extra real-tile cells: CISM_ISAID_ROOT for a SynthAerial
    profile, None for a profile whose runs are on real tiles already (or when unset)."""
    return None if profile in REAL_PROFILES else isaid_root()


def check_profile_data(profile: str) -> None:
    """Open the train and val splits of a real-data profile once, so that a missing, wrong or
    incomplete folder fails before any notebook runs: a ConfigError or DataError in one line."""
    if profile not in REAL_PROFILES:
        return
    from cism_lib.pipeline import open_split

    cfg = experiment_config(profile)
    for split in (cfg.data.train_split, cfg.data.val_split):
        ds = open_split(cfg, split, progress=False)
        if len(ds) == 0:
            raise DataError(f"{cfg.data.root or isaid_root()}: split {split!r} has no tiles")


# ----------------------------------------------------------------------------- table rows
@dataclass(frozen=True)
class Row:
    """One configuration of a table: a label, dotted config overrides and the paper's row."""

    label: str
    overrides: Mapping[str, Any]
    paper: int | None = None            # row index in the paper's CSV (None: no paper number)
    key: bool = False                   # gets the plan's key_seeds


BASELINE = {"model.method": "cian"}
CISM: dict[str, Any] = {"model.method": "cism"}    # every module and loss: the config defaults
NO_SLSC = ("ml", "csm", "nsc")
WITH_MCSG = {"data.mcsg": True}


def _cism(**switches: Any) -> dict[str, Any]:
    """CISM overrides with some switches changed (keys without the 'model.' prefix)."""
    return {**CISM, **{f"model.{k}": v for k, v in switches.items()}}


TABLES: dict[str, list[Row]] = {
    "table1": [Row("CAM", {"model.method": "cam"}), Row("CIAN", BASELINE, 2, key=True),
               Row("CISM", CISM, 6, key=True)],
    "table4": [Row("Baseline (CIAN)", BASELINE, 0, key=True),
               Row("+PV", _cism(use_pie=False, use_slsc=False, losses=NO_SLSC), 1),
               Row("+PV+PIE", _cism(use_slsc=False, losses=NO_SLSC), 2)],
    "table5": [Row(f"eta={eta}", _cism(eta=eta), i, key=eta == 0.3)
               for i, eta in enumerate((0.1, 0.3, 0.5, 0.7))],
    "table6": [Row("CIAN", BASELINE, 0, key=True),
               Row("CIAN +SLSC", _cism(use_pv=False, use_pie=False, losses=("ml", "sl")), 1),
               Row("RPNet-like", _cism(use_pie=False, use_slsc=False, losses=("ml",)), 2),
               Row("RPNet-like +SLSC", _cism(use_pie=False, losses=("ml", "sl")), 3),
               Row("CISM", _cism(use_slsc=False, losses=NO_SLSC), 4),
               Row("CISM +SLSC", CISM, 5, key=True)],
    "table7": [Row("Baseline (CIAN)", BASELINE, 0, key=True), Row("Baseline +MCSG", {**BASELINE, **WITH_MCSG}, 1),
               Row("CISM", CISM, 2, key=True), Row("CISM +MCSG", {**CISM, **WITH_MCSG}, 3)],
    "table8": [Row("ml", {**_cism(use_slsc=False, losses=("ml",)), **WITH_MCSG}, 0),
               Row("ml+sl", {**_cism(losses=("ml", "sl")), **WITH_MCSG}, 1),
               Row("ml+sl+nsc", {**_cism(losses=("ml", "sl", "nsc")), **WITH_MCSG}, 2),
               Row("ml+sl+csm", {**_cism(losses=("ml", "sl", "csm")), **WITH_MCSG}, 3),
               Row("ml+sl+csm+nsc", {**CISM, **WITH_MCSG}, 4)],
}


# The readings of the CISM issue (docs/results.md, "real-tile screen"), each a config option, on
# the real tiles at a screening budget: the isaid512 preset on its first `data.max_train` training
# tiles for one epoch, CAMs of those tiles (where the background threshold is chosen) and of all
# val tiles (where mIoU is reported). Rows in the order they are worth running.
SCREEN: list[Row] = [
    Row("CAM", {"model.method": "cam"}),
    Row("CIAN", BASELINE),
    Row("CISM", CISM),
    Row("CISM, no CIAN affinity", _cism(cross_affinity=False)),     # is CIAN's base what costs?
    Row("CISM, lambda 0.1", _cism(lam=0.1)),                         # H2: gradient balance
    Row("CISM + self L_ml", _cism(self_ml=True)),                     # H4: the test-time path
    Row("CIAN + self L_ml", {**BASELINE, "model.self_ml": True}),     # H4
    Row("CISM, literal SLSC", _cism(sl_scorer="cam", sl_detach=False, sl_pool="gamma")),  # H1
    Row("CISM, sum over classes", _cism(loss_reduction="sum")),       # H2: Eq. 19/24/27 as written
    Row("CISM, centred similarities", _cism(sim_centre=True)),        # H3: PV/PIE near-inert
    Row("CISM, aux warm-up 0.5", {**CISM, "train.aux_warmup": 0.5}),  # H2: L_ml first, then the rest
    # H2, ReCAM's way: the CAM row's trained weights (same seed), then one more epoch with every
    # CISM loss; 150 steps in all, so its budget-matched baseline is "CAM, 2 epochs".
    Row("CISM from the CAM run", {**CISM, "train.init_from": "@screen:CAM"}),
    Row("CAM, 2 epochs", {"model.method": "cam", "train.epochs": 2}),
    # H2: λ set every 5 steps so that the auxiliary losses' backbone gradient is L_ml's in norm
    Row("CISM, gradient-balanced lambda", {**CISM, "train.lam_balance_every": 5}),
]
SCREEN_REF = "@screen:"  # a train.init_from value naming another screen row's checkpoint (same seed)


def screen_config(**overrides: Any) -> RunConfig:
    """The isaid512 preset on the real tiles (CISM_ISAID_ROOT) at SCREEN_BUDGET, then `overrides`."""
    root = isaid_root()
    if root is None or not (root / "train").is_dir():
        raise ConfigError(f"{ISAID_ENV}={root or '<unset>'}: the real-tile screen needs the iSAID patch "
                          "folder (with train/ and val/) named by this environment variable")
    return replace(_load_profile("isaid512"), **{**SCREEN_BUDGET, "data.root": str(root), **overrides})


def run_screen(labels: Sequence[str] | None = None, seeds: Sequence[int] = (0, 1), progress: bool = True,
               cam_sources: Sequence[str] | None = None, **overrides: Any) -> pd.DataFrame:
    """Run (or reuse) the screen's rows (all, or those labelled `labels`) × seeds; one line per run.

    `cam_sources` (e.g. ("slsc", "product")): for runs with the separate SLSC scorer, also the CAMs
    from that scorer and/or from its product with W_c (pipeline.score_cam_sources; columns
    cam_miou_<split>_<source>).

    Seeds go round the rows (every row's seed 0, then every row's seed 1), so a screen cut short
    still has one seed of every row. Written to results/isaid512/screen_runs.csv after each run.
    """
    from cism_lib.pipeline import run_all, score_cam_sources
    from cism_lib.runtime import progress_bar

    known = {r.label: r for r in SCREEN}
    missing = [x for x in labels or () if x not in known]
    if missing:
        raise ConfigError(f"unknown screen row(s) {missing}; rows are {list(known)}")
    rows = [known[x] for x in labels] if labels else SCREEN
    base = screen_config(**overrides)
    path = output_dir("results", "isaid512") / "screen_runs.csv"
    records = []
    for seed, row in progress_bar([(s, r) for s in seeds for r in rows], desc="screen", disable=not progress):
        cfg = _screen_row_config(row, seed, base, known, progress)
        rd = run_all(cfg, stages=CAM_STAGES, progress=progress)
        last = read_history(rd).tail(1)  # the last epoch's per-loss backbone gradients (grad_probe)
        grads = {k: last[k].item() for k in last.columns if k.startswith("grad_")}
        m = cfg.model
        if cam_sources and m.method == "cism" and m.use_slsc and m.sl_scorer == "separate":
            grads.update(score_cam_sources(cfg, rd, sources=cam_sources, progress=progress))
        budget = {"tiles": cfg.data.max_train, "epochs": cfg.train.epochs,
                  "cam_tiles": cfg.cam.max_train or cfg.data.max_train}
        records.append({**run_record("screen", row, seed, cfg, rd, report=cfg.data.val_split), **budget, **grads})
        merge_lines(pd.DataFrame(records[-1:]), path, key=("run",))  # other rows, seeds and budgets stay
    return pd.DataFrame(records)


def _screen_row_config(row: Row, seed: int, base: RunConfig, known: Mapping[str, Row],
                       progress: bool = True) -> RunConfig:
    """A screen row's config; a train.init_from of "@screen:<label>" becomes that row's
    checkpoint for the same seed, trained first when it is not there yet."""
    from cism_lib.pipeline import run_all

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
        line: dict[str, Any] = {"row": r["row"], "seed": int(r["seed"]),
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
    from cism_lib.display import cell

    runs = with_screen_budget(runs)
    order = [r.label for r in SCREEN]

    def rank(kv: tuple) -> tuple:
        (label, tiles, epochs, _), _ = kv
        return (tiles * epochs, order.index(label) if label in order else len(order))

    def mean_std(values: pd.Series) -> str:
        return cell(100 * values.mean(), 100 * values.std(ddof=1) if len(values) > 1 else math.nan)

    lines = []
    for (label, tiles, epochs, cam_tiles), g in sorted(runs.groupby(["row", "tiles", "epochs", "cam_tiles"], sort=False),
                                                        key=rank):
        budget = f"{int(tiles)} × {int(epochs)}" + (f" (thr. on {int(cam_tiles)})" if cam_tiles != tiles else "")
        line: dict[str, Any] = {"row": label, "tiles × epochs": budget,
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


def table_rows(table: str) -> list[Row]:
    """The rows of a table, or a ConfigError listing the tables."""
    if table not in TABLES:
        raise ConfigError(f"unknown table {table!r}; choose one of {sorted(TABLES)}")
    return TABLES[table]


def row_config(row: Row, profile: str = "cpu", seed: int = 0, base: RunConfig | None = None,
               table: str = "") -> RunConfig:
    """The full config of one row and seed (on `base`, default the profile's experiment config)."""
    base = experiment_config(profile) if base is None else base
    name = f"{table}-{row.label}" if table else row.label
    budget = plan_for(profile).table_overrides.get(table, {}) if profile in PLANS else {}
    return replace(base, name=name, **{**budget, **row.overrides, "train.seed": seed})


def planned_rows(table: str, profile: str) -> list[tuple[Row, list[int]]]:
    """(row, seeds) the profile's plan runs for a table."""
    plan = plan_for(profile)
    subset = plan.rows.get(table)
    cap = plan.max_seeds.get(table, plan.key_seeds)
    return [(r, list(range(min(cap, plan.key_seeds if r.key else plan.seeds)))) for r in table_rows(table)
            if subset is None or r.label in subset]


# ----------------------------------------------------------------------------- running
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
    from cism_lib.pipeline import scalar_metrics

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


def run_rows(table: str, profile: str = "cpu", seeds: Sequence[int] | None = None,
             stages: Sequence[str] = CAM_STAGES, progress: bool = True,
             base: RunConfig | None = None) -> pd.DataFrame:
    """Run (or reuse) every planned row × seed of a table; one line per run.

    `seeds` overrides the plan's seeds for every row; `base` replaces the profile's experiment
    config (e.g. `experiment_config(profile, real=True)` for the real tiles).
    """
    from cism_lib.pipeline import run_all
    from cism_lib.runtime import progress_bar

    jobs = [(row, s) for row, plan_seeds in planned_rows(table, profile)
            for s in (plan_seeds if seeds is None else seeds)]
    report = plan_for(profile).report if base is None else "train"
    records = []
    for row, seed in progress_bar(jobs, desc=table, disable=not progress):
        cfg = row_config(row, profile, seed, base, table)
        chain = row_chain(profile, row.label, cfg) if base is None and set(stages) & {"pseudo", "segment"} else None
        rd = run_all(cfg, stages=CAM_STAGES if chain is not None else stages, progress=progress)
        # the metrics of the stages asked for: a run shared with Table 1 may have pseudo-masks and
        # a DeepLab too, depending on which notebook ran first; the table is the same either way
        record = run_record(table, row, seed, cfg, rd, report)
        if chain is not None:
            from cism_lib.pipeline import chain_config, run_chain, scalar_metrics

            cd = run_chain(chain_config(rd, **chain), rd, progress=progress)
            record.update({**scalar_metrics(cd), "chain_dir": _portable(cd)})
        skip = tuple(prefix for stage, prefix in (("pseudo", "pseudo_"), ("segment", "seg_")) if stage not in stages)
        records.append({k: v for k, v in record.items() if not (skip and k.startswith(skip))})
    return pd.DataFrame(records)


def training_config(profile: str, method: str = "cism", **overrides: Any) -> RunConfig:
    """The run `03_train` trains: the profile's Table 1 row of `method` (seed 0), so that it is
    that row's run (on the real tiles too, where Table 1 has its own budget), then `overrides`."""
    rows = [r for r in table_rows("table1") if r.overrides.get("model.method") == method]
    if not rows:
        raise ConfigError(f"no Table 1 row trains method {method!r}; choose cam, cian or cism")
    return replace(row_config(rows[0], profile, 0, table="table1"), **overrides)


def row_chain(profile: str, label: str, cfg: RunConfig) -> dict[str, Any] | None:
    """The chain overrides (Plan.chain) a Table 1 row of the profile gets, or None: when the plan
    has no chain, the row is not one of its chain_rows, or the run trains its own DeepLab."""
    plan = plan_for(profile)
    if plan.chain is None or cfg.seg.enabled or (plan.chain_rows is not None and label not in plan.chain_rows):
        return None
    return {**plan.chain, **(plan.chain_rows or {}).get(label, {})}


def table1_report(profile: str) -> str:
    """The split of Table 1's CAM scores in a profile (train: threshold chosen on val; val: on train)."""
    return plan_for(profile).report


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


# ----------------------------------------------------------------------------- summaries
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
    from cism_lib.runtime import write_text_atomic

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
    from cism_lib import display

    return display.table(df, caption=caption, digits=digits)


# ----------------------------------------------------------------------------- notebook helpers
# The CAM figures of the paper as (table, row) pairs: Figure 7 baseline vs CISM, Figure 8 the
# PV/PIE steps of Table 4, Figure 9 the SLSC comparison of Table 6.
FIGURES: dict[str, list[tuple[str, str]]] = {
    "figure7": [("table6", "CIAN"), ("table6", "CISM +SLSC")],
    "figure8": [("table4", "Baseline (CIAN)"), ("table4", "+PV"), ("table4", "+PV+PIE")],
    "figure9": [("table6", "CIAN"), ("table6", "RPNet-like"), ("table6", "CISM"), ("table6", "CISM +SLSC")],
}


def figure_runs(figure: str, profile: str) -> dict[str, RunConfig]:
    """{row label: config (seed 0)} of a CAM figure, limited to the rows the profile's plan runs."""
    out = {}
    for table, label in FIGURES[figure]:
        planned = {r.label: r for r, _ in planned_rows(table, profile)}
        if label in planned:
            out[label] = row_config(planned[label], profile, 0, table=table)
    return out


def run_configs(configs: Mapping[str, RunConfig], stages: Sequence[str] = CAM_STAGES,
                progress: bool = True) -> dict[str, Path]:
    """Run (or reuse) several configs; {name: run folder}."""
    from cism_lib.pipeline import run_all

    return {name: run_all(cfg, stages=stages, progress=progress) for name, cfg in configs.items()}


def profile_runs(profile: str) -> list[tuple[RunConfig, tuple[str, ...]]]:
    """Every run the profile's notebooks make on its own data, once each, with the stages they
    ask of it: each planned row × seed of every table (Table 1 through the whole chain) and the
    `03_train` notebook's default run (the figures' runs are table rows). The runs with the most
    stages come first, so a pool of workers ends with the short ones."""
    from cism_lib.pipeline import STAGES, run_dir

    wanted: dict[Path, tuple[RunConfig, set[str]]] = {}

    def add(cfg: RunConfig, stages: Sequence[str]) -> None:
        wanted.setdefault(run_dir(cfg), (cfg, set()))[1].update(stages)

    for table in TABLES:
        for row, seeds in planned_rows(table, profile):
            for seed in seeds:
                cfg = row_config(row, profile, seed, table=table)
                whole = table == "table1" and row_chain(profile, row.label, cfg) is None and cfg.seg.enabled
                add(cfg, STAGES if whole else CAM_STAGES)
    add(training_config(profile), CAM_STAGES)
    jobs = [(cfg, tuple(s for s in STAGES if s in stages)) for cfg, stages in wanted.values()]
    return sorted(jobs, key=lambda job: -len(job[1]))


def profile_chains(profile: str) -> list[tuple[RunConfig, dict[str, Any]]]:
    """(run config, chain overrides) of every Table 1 run the profile chains (Plan.chain)."""
    out = []
    for row, seeds in planned_rows("table1", profile):
        for seed in seeds:
            cfg = row_config(row, profile, seed, table="table1")
            chain = row_chain(profile, row.label, cfg)
            if chain is not None:
                out.append((cfg, chain))
    return out


def _chain_job(cfg: RunConfig, chain: dict[str, Any]) -> tuple[str, float]:
    """One chain in a worker process of `prepare_runs` → (chain folder, seconds)."""
    import time

    from cism_lib.pipeline import chain_config, run_chain, run_dir

    start = time.perf_counter()
    rd = run_dir(cfg)
    return str(run_chain(chain_config(rd, **chain), rd, progress=False)), time.perf_counter() - start


def _run_job(cfg: RunConfig, stages: tuple[str, ...]) -> tuple[str, float]:
    """One run in a worker process of `prepare_runs` → (run folder, seconds)."""
    import time

    from cism_lib.pipeline import run_all

    start = time.perf_counter()
    return str(run_all(cfg, stages=stages, progress=False)), time.perf_counter() - start


def default_workers(profile: str) -> int:
    """How many runs `prepare_runs` trains at once: the cores over the profile's threads on a
    CPU profile (1 on a GPU profile, where runs share the device)."""
    cfg = _load_profile(profile)
    if cfg.device not in ("cpu", "auto") or (cfg.device == "auto" and _cuda_available()):
        return 1
    return max(1, (os.cpu_count() or 1) // max(1, cfg.threads))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def prepare_runs(profile: str, workers: int, log: Any = print) -> list[Path]:
    """Run (or reuse) every run of `profile_runs(profile)` in `workers` processes at once, before
    the notebooks, which then find them finished (the same folders: nothing depends on which
    process ran what, since each run sets its own seed and the profile fixes its thread count).

    On 2 cores two 1-thread runs side by side do ~1.3× the work of one 2-thread run. The data
    are prepared once first (SynthAerial generation, the image-level label caches), so workers
    never write them concurrently. A failed run stops it with a one-line error naming its folder.
    Then the chains of Plan.chain (pseudo-masks and DeepLab of Table 1's runs), the same way.
    """
    from cism_lib.pipeline import pending_stages, run_dir

    jobs = [(cfg, stages) for cfg, stages in profile_runs(profile)
            if pending_stages(cfg, run_dir(cfg), stages)]
    done = _pool(profile, _run_job, jobs, workers, log, "run", "runs") if jobs else []
    chains = [(cfg, chain) for cfg, chain in profile_chains(profile) if not _chain_finished(cfg, chain)]
    if chains:  # after every classifier run is done: each chain needs its run's classifier and CAMs
        done += _pool(profile, _chain_job, chains, workers, log, "chain",
                      "chains (pseudo-masks and DeepLab)")
    return done


def _chain_finished(cfg: RunConfig, chain: dict[str, Any]) -> bool:
    """True when every stage of a run's chain has its marker (False when the run is not done)."""
    from cism_lib.pipeline import CHAIN_STAGES, chain_config, chain_dir, run_dir, stage_done

    rd = run_dir(cfg)
    if not RunFolder(rd).config.is_file():
        return False
    cd = chain_dir(chain_config(rd, **chain), rd)
    return all(stage_done(cd, s) for s in CHAIN_STAGES)


def _pool(profile: str, fn: Any, jobs: list[tuple[RunConfig, Any]], workers: int, log: Any,
          noun: str, what: str) -> list[Path]:
    """fn(cfg, extra) for each job in `workers` spawned processes; a failure stops all with one
    line naming the run folder. The log counts `what` (plural) one `noun` at a time: a "run" by its
    folder's name, anything else (a chain) by its last three path parts."""
    import multiprocessing
    import time
    from concurrent.futures import FIRST_COMPLETED, wait

    from cism_lib.errors import CismError
    from cism_lib.pipeline import open_split, run_dir
    from cism_lib.runtime import process_pool

    seen: set[tuple[Any, ...]] = set()
    for cfg, _ in jobs:  # generate / label each dataset in this process first
        key = (cfg.data.dataset, cfg.data.root, cfg.data.max_train, cfg.data.max_val)
        if key not in seen:
            seen.add(key)
            for split in (cfg.data.train_split, cfg.data.val_split):
                open_split(cfg, split, progress=False)
    log(f"[{profile}] {len(jobs)} {what} in {workers} processes of {jobs[0][0].threads} thread(s)")
    start, done = time.perf_counter(), []
    ctx = multiprocessing.get_context("spawn")
    with process_pool(workers, ctx) as pool:
        futures = {pool.submit(fn, cfg, extra): run_dir(cfg) for cfg, extra in jobs}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                exc = fut.exception()
                if exc is not None:
                    for other in pending:
                        other.cancel()
                    message = str(exc) if isinstance(exc, CismError) else f"{type(exc).__name__}: {exc}"
                    raise CismError(f"{futures[fut]}: {message}") from exc
                folder, seconds = fut.result()
                done.append(Path(folder))
                shown = Path(folder).name if noun == "run" else "/".join(Path(folder).parts[-3:])
                log(f"[{profile}] {noun} {len(done)}/{len(jobs)} {shown} in {seconds / 60:.1f} min "
                    f"({(time.perf_counter() - start) / 60:.1f} min so far)")
    return done


def metrics_frame(folders: Mapping[str, Path]) -> pd.DataFrame:
    """The scalar metrics of several run folders, one line per run."""
    from cism_lib.pipeline import scalar_metrics

    return pd.DataFrame({name: scalar_metrics(rd) for name, rd in folders.items()}).T


def prefer_gpu(cfg: RunConfig) -> RunConfig:
    """The config on the GPU when there is one (the profile's device otherwise)."""
    import torch

    return replace(cfg, device="cuda") if torch.cuda.is_available() else cfg


def dataset_labels(cfg: RunConfig, split: str | None = None, progress: bool = True) -> tuple[np.ndarray, Any]:
    """(image-level labels bool [N, K], class set) of a split (default: the training split)."""
    from cism_lib.pipeline import open_split

    ds = open_split(cfg, split or cfg.data.train_split, progress=progress)
    return np.asarray(ds.load_labels(progress=progress), dtype=bool), ds.classes


def figure5_labels(profile: str, progress: bool = True) -> dict[str, np.ndarray]:
    """Training labels of SynthAerial and, when CISM_ISAID_ROOT is set, of the real tiles."""
    out = {"SynthAerial": dataset_labels(experiment_config(profile), progress=progress)[0]}
    if isaid_root() is not None:
        out["iSAID tiles"] = dataset_labels(experiment_config(profile, real=True), progress=progress)[0]
    return out


def statistics_tables(labels: Mapping[str, np.ndarray], max_bin: int = 5) -> dict[str, pd.DataFrame]:
    """Category-count histogram and per-class image counts of each dataset, in long form."""
    from cism_lib.data.stats import category_histogram, class_image_counts

    cats = [category_histogram(lab, max_bin).assign(dataset=n) for n, lab in labels.items()]
    classes = [class_image_counts(lab, ISAID).assign(dataset=n) for n, lab in labels.items()]
    return {"categories": pd.concat(cats, ignore_index=True),
            "classes": pd.concat(classes, ignore_index=True)}


def mcsg_examples(cfg: RunConfig, n: int = 4, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """n MCSG mosaics (image, mask, label) of the training split (Figure 6)."""
    from cism_lib.data.mcsg import MCSG
    from cism_lib.pipeline import open_split

    base = open_split(cfg, cfg.data.train_split)
    mcsg = MCSG(base.labels, max_categories=cfg.data.mcsg_max_categories)
    rng = np.random.default_rng(seed)
    return [mcsg.make(base, rng) for _ in range(n)]


def mcsg_distribution(cfg: RunConfig, n: int = 2000, seed: int = 0,
                      prob: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels of n training queries without and with MCSG (really stitched), for Figure 6."""
    from cism_lib.data.mcsg import MCSG, mcsg_label_distribution
    from cism_lib.pipeline import open_split

    base = open_split(cfg, cfg.data.train_split)
    mcsg = MCSG(base.labels, max_categories=cfg.data.mcsg_max_categories, prob=prob,
                batch_size=cfg.train.batch_size)
    before = mcsg_label_distribution(None, base.labels, n, np.random.default_rng(seed))
    after = mcsg_label_distribution(mcsg, base.labels, n, np.random.default_rng(seed))
    return before, after


def read_history(rd: Path) -> pd.DataFrame:
    """The per-epoch training log `<run>/train/log.jsonl` as a frame (empty when absent)."""
    return pd.DataFrame(train_history(rd))


def train_live(cfg: RunConfig, progress: bool = True) -> Path:
    """Train the classifier of a run with a live loss plot (reuses a finished run); returns its folder.

    Writes the same outputs and stage marker as `pipeline.run_all(cfg, stages=("train",))`.
    """
    from cism_lib import pipeline
    from cism_lib.viz import LiveCurves

    rd = pipeline.run_dir(cfg)
    if pipeline.stage_done(rd, "train"):
        return rd
    pipeline.write_run_record(cfg, rd)
    live = LiveCurves(read_history(rd).to_dict("records"))
    pipeline.mark_done(rd, "train", pipeline.stage_train(cfg, rd, progress=progress, on_epoch=live.update))
    live.close()
    return rd


def _image_order(labels: np.ndarray, n: int) -> list[int]:
    """The n images with the most categories (ties by index): the interesting ones to show."""
    counts = np.asarray(labels, dtype=bool).sum(axis=1)
    return [int(i) for i in np.argsort(-counts, kind="stable")[:n]]


def focus_class(label: np.ndarray, gt: np.ndarray) -> int:
    """The class id (1..K) a figure shows for an image: of the classes its image-level label holds,
    the one with the most ground-truth pixels (lowest id on ties); 0 when the label is empty."""
    present = [int(k) + 1 for k in np.flatnonzero(label)]
    if not present:
        return 0
    area = [int(np.sum(gt == k)) for k in present]
    return present[int(np.argmax(area))]


def image_metrics(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> dict[str, Any]:
    """ConfusionMatrix metrics (miou, per-class iou, …) of one image's prediction."""
    from cism_lib.metrics import ConfusionMatrix

    cm = ConfusionMatrix(num_classes)
    cm.update(gt, pred)
    return cm.compute()


def image_iou(gt: np.ndarray, pred: np.ndarray, num_classes: int, class_id: int | None = None) -> float:
    """IoU of one class (or the mIoU over the classes present in gt or pred) on one image."""
    m = image_metrics(gt, pred, num_classes)
    return float(m["iou"][class_id] if class_id is not None else m["miou"])


def cam_examples(runs: Mapping[str, RunConfig], split: str = "val", n: int = 4,
                 indices: Sequence[int] | None = None, pseudo_of: str | None = None,
                 crf: CrfConfig | None = None) -> list[dict[str, Any]]:
    """Image, ground truth, each run's CAM and a CRF pseudo-mask for n images (Figures 7-9).

    Each image shows one class, `focus_class` (of its labelled classes the one with the largest
    ground-truth area): every run's CAM of that class, noted with the class's IoU on this image
    after thresholding at the background threshold the run selected on the other split. The
    pseudo-mask is made from the CAMs of `pseudo_of` (default: the last run) with that run's
    threshold and noted with its mIoU on the image. Runs must have finished the cams and eval stages.
    """
    from cism_lib.cam import cam_to_labels, load_cam
    from cism_lib.crf import pseudo_mask
    from cism_lib.pipeline import open_split, read_metrics, run_dir
    from cism_lib.viz import cam_title

    first = next(iter(runs.values()))
    ds = open_split(first, split, progress=False)
    k_all = ds.classes.num_classes
    idx = list(indices) if indices is not None else _image_order(ds.labels, n)
    pseudo_of = pseudo_of or list(runs)[-1]
    thresholds = {name: float(read_metrics(run_dir(cfg)).get(f"cam_threshold_{split}", 0.3))
                  for name, cfg in runs.items()}
    samples = []
    for i in idx:
        image, gt = ds.read(i)
        cams = {name: load_cam(RunFolder(run_dir(cfg)).cams(split) / f"{ds.ids[i]}.npz", ds.classes.num_foreground)
                for name, cfg in runs.items()}
        label = cams[pseudo_of][1]
        k = focus_class(label, gt)
        sample: dict[str, Any] = {"image": image, "ground truth": gt}
        notes = {"ground truth": ", ".join(ds.classes.abbrev[c] if ds.classes.abbrev else ds.classes.names[c]
                                           for c in sorted({int(v) for v in np.unique(gt)} - {0, 255}))}
        for name, (cam, _) in cams.items():
            title = cam_title(name)
            sample[title] = cam[k - 1] if k else np.zeros(cam.shape[1:], np.float32)
            if k:
                iou = image_iou(gt, cam_to_labels(cam, thresholds[name]), k_all, k)
                notes[title] = f"{ds.classes.names[k]}: IoU {100 * iou:.1f}"
        cam, _ = cams[pseudo_of]
        title = f"pseudo-mask ({pseudo_of})"
        # A writable copy: pydensecrf rejects read-only buffers (as ds.read may return).
        sample[title] = pseudo_mask(image.copy(), cam, label, crf or runs[pseudo_of].crf,
                                    bg_threshold=thresholds[pseudo_of])
        notes[title] = f"mIoU {100 * image_iou(gt, sample[title], k_all):.1f}"
        sample["notes"] = notes
        samples.append(sample)
    return samples


def chain_examples(chains: Mapping[str, tuple[RunConfig, Path]], split: str = "val", n: int = 4,
                   indices: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Image, ground truth, then for each model its CAM, its pseudo-mask (train split only: the
    chain makes masks of training images) and its DeepLab prediction, for n images (the real-tile
    figure). `chains` maps a model name to (its run config, its chain folder) as run_rows records
    them; CAMs are shown and noted as in cam_examples (the focus class of the first model's
    labels), masks and predictions with their mIoU on the image."""
    from cism_lib.cam import cam_to_labels, load_cam
    from cism_lib.crf import read_index_png
    from cism_lib.data.transforms import normalization_for
    from cism_lib.pipeline import open_split, read_metrics
    from cism_lib.segment import load_segmenter, predict_segmenter
    from cism_lib.viz import cam_title

    first = next(iter(chains.values()))[0]
    ds = open_split(first, split, progress=False)
    k_all = ds.classes.num_classes
    idx = list(indices) if indices is not None else _image_order(ds.labels, n)
    nets = {}
    for name, (_, cd) in chains.items():
        ccfg = load_config(RunFolder(cd).config)  # the chain's whole config (run_chain saves it)
        nets[name] = (load_segmenter(ccfg.seg, k_all, RunFolder(cd).seg_checkpoint),
                      normalization_for(ccfg.seg.backbone), ccfg.train.amp)
    runs = {name: RunFolder(cd).run_of_chain.root for name, (_, cd) in chains.items()}
    thresholds = {name: float(read_metrics(rd).get(f"cam_threshold_{split}", 0.3)) for name, rd in runs.items()}
    samples = []
    for i in idx:
        image, gt = ds.read(i)
        sid = ds.ids[i]
        cams = {name: load_cam(RunFolder(rd).cams(split) / f"{sid}.npz", ds.classes.num_foreground)
                for name, rd in runs.items()}
        k = focus_class(next(iter(cams.values()))[1], gt)
        sample: dict[str, Any] = {"image": image, "ground truth": gt}
        notes = {"ground truth": ", ".join(ds.classes.abbrev[c] if ds.classes.abbrev else ds.classes.names[c]
                                           for c in sorted({int(v) for v in np.unique(gt)} - {0, 255}))}
        for name, (cam, _) in cams.items():
            sample[cam_title(name)] = cam[k - 1] if k else np.zeros(cam.shape[1:], np.float32)
            if k:
                iou = image_iou(gt, cam_to_labels(cam, thresholds[name]), k_all, k)
                notes[cam_title(name)] = f"{ds.classes.names[k]}: IoU {100 * iou:.1f}"
        if split == first.data.train_split:
            for name, (_, cd) in chains.items():
                mask = read_index_png(RunFolder(cd).pseudo() / f"{sid}.png")
                sample[f"{name} pseudo-mask"] = mask
                notes[f"{name} pseudo-mask"] = f"mIoU {100 * image_iou(gt, mask, k_all):.1f}"
        for name, (net, (mean, std), amp) in nets.items():
            pred = predict_segmenter(net, image, mean, std, amp)
            sample[f"{name} DeepLab"] = pred
            notes[f"{name} DeepLab"] = f"mIoU {100 * image_iou(gt, pred, k_all):.1f}"
        sample["notes"] = notes
        samples.append(sample)
    return samples


def chain_figure_runs(runs: pd.DataFrame) -> dict[str, tuple[RunConfig, Path]]:
    """{model: (config, chain folder)} of the seed-0 lines of a Table 1 frame that have a chain."""
    out = {}
    for _, line in runs.iterrows():
        if int(line["seed"]) == 0 and isinstance(line.get("chain_dir"), str):
            cd = ROOT / line["chain_dir"]  # _portable's path: relative to the repository, or absolute
            out[str(line["row"])] = (load_config(RunFolder(ROOT / line["run_dir"]).config), cd)
    return out


def inside_example(cfg: RunConfig, split: str = "val", index_q: int = 0, index_r: int | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """One query/reference pair through a trained CISM run, every step kept (models.inside.trace).

    The run is trained if needed (the train stage only). `index_r` None: the first other image
    of the split whose image-level label shares a class with the query's (the pair sampler's
    rule), or the query itself when none does. Returns the two images, their ground truth (for
    drawing only), their labels with l_co and l_q\\co, and the steps as numpy arrays of the
    pair (batch dimension dropped), with the class names, τ and η of the model.
    """
    import torch

    from cism_lib.cam import normalize_image
    from cism_lib.engine import load_classifier
    from cism_lib.models.inside import pair_labels, trace
    from cism_lib.pipeline import normalization, open_split, run_all

    if cfg.model.method != "cism":
        raise ConfigError(f"inside_example needs a CISM run; model.method is {cfg.model.method!r}")
    rd = run_all(cfg, stages=("train",), progress=progress)
    ds = open_split(cfg, split, progress=False)
    labels = np.asarray(ds.labels, dtype=bool)
    if index_r is None:
        shared = [j for j in range(len(ds)) if j != index_q and (labels[j] & labels[index_q]).any()]
        index_r = shared[0] if shared else index_q
    model = load_classifier(cfg, ds.classes.num_foreground, RunFolder(rd).checkpoint, torch.device("cpu"))
    mean, std = normalization(cfg)
    (image_q, gt_q), (image_r, gt_r) = ds.read(index_q), ds.read(index_r)
    steps = trace(model.eval(), normalize_image(image_q, mean, std)[None], normalize_image(image_r, mean, std)[None])
    lab = pair_labels(torch.from_numpy(labels[index_q]), torch.from_numpy(labels[index_r]))
    return {"ids": (ds.ids[index_q], ds.ids[index_r]), "indices": (index_q, index_r),
            "images": (image_q, image_r), "gt": (gt_q, gt_r),
            "labels": {k: v.numpy() for k, v in lab.items()},
            "steps": {k: v[0].float().numpy() for k, v in steps.items()},
            "classes": ds.classes, "tau": model.cam_threshold, "eta": model.eta, "data": data_label(cfg),
            "config": {k: getattr(cfg.model, k) for k in ("sl_scorer", "sl_form", "sl_pool", "pie_pool",
                                                            "pie_norm", "sim_centre", "gamma_axis")}}


def present_classes(cfg: RunConfig, split: str, index: int) -> list[str]:
    """Names of the classes in image `index`'s image-level label (what the explorer offers)."""
    from cism_lib.pipeline import open_split

    ds = open_split(cfg, split, progress=False)
    return [ds.classes.names[int(k) + 1] for k in np.flatnonzero(ds.labels[index])]


def explore(cfg: RunConfig, split: str, index: int, class_id: int | None, bg_threshold: float,
            crf: CrfConfig) -> dict[str, Any]:
    """One image of a finished run: its CAM of a class, thresholded and CRF masks, and their IoU.

    `class_id` None: the image's `focus_class` (a class its label holds, the largest in area).
    """
    from cism_lib.cam import cam_to_labels, load_cam
    from cism_lib.crf import pseudo_mask
    from cism_lib.pipeline import open_split, run_dir

    ds = open_split(cfg, split, progress=False)
    image, gt = ds.read(index)
    cam, label = load_cam(RunFolder(run_dir(cfg)).cams(split) / f"{ds.ids[index]}.npz", ds.classes.num_foreground)
    if class_id is None:
        class_id = focus_class(label, gt) or 1
    masks = {"CAM + threshold": cam_to_labels(cam, bg_threshold),
             "CAM + CRF": pseudo_mask(image.copy(), cam, label, crf, bg_threshold=bg_threshold)}
    ious = {}
    for name, mask in masks.items():
        m = image_metrics(gt, mask, ds.classes.num_classes)
        ious[name] = {"mIoU": m["miou"], "class IoU": m["iou"][class_id]}
    return {"id": ds.ids[index], "image": image, "gt": gt, "cam": cam[class_id - 1],
            "class_id": class_id, "class_name": ds.classes.names[class_id],
            "present": [ds.classes.names[k + 1] for k in np.flatnonzero(label)],
            "masks": masks, "iou": ious, "classes": ds.classes}


__all__ = [
    "PROFILES", "TABLES", "PLANS", "Row", "Plan", "repo_root", "current_profile", "profile_config",
    "experiment_config", "extra_real_root", "check_profile_data", "REAL_PROFILES", "output_dir",
    "row_config", "planned_rows", "run_rows", "per_class_iou",
    "summarise", "paper_table", "compare", "compare_table1", "compare_table2", "write_table", "write_csv", "merge_lines",
    "figure5_labels", "statistics_tables", "mcsg_examples", "mcsg_distribution", "read_history",
    "train_live", "cam_examples", "focus_class", "image_metrics", "image_iou", "present_classes",
    "inside_example", "explore", "FIGURES", "figure_runs", "run_configs", "metrics_frame", "prefer_gpu",
    "isaid_root", "SCREEN", "SCREEN_BUDGET", "screen_config", "run_screen", "screen_summary",
]

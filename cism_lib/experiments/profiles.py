"""The profiles: their presets, plans and budgets, and the rows, seeds and configs each one runs."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cism_lib.config import PROFILES, RunConfig, load_config, replace
from cism_lib.errors import ConfigError, DataError
from cism_lib.experiments.tables import Row, table_rows
from cism_lib.outputs import ROOT
from cism_lib.pipeline import open_split
from cism_lib.runfolder import ISAID_ENV
from cism_lib.runtime import HEADLESS_ENV

PROFILE_ENV = "CISM_PROFILE"
CAM_STAGES = ("train", "cams", "eval")
DATA_LABELS = {"synthetic": "SynthAerial (synthetic)", "isaid": "iSAID tiles (real)",
               "voc": "PASCAL VOC 2012 (real)"}


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
    # lazy: it loads PIL and the scene generator, which a config does not need
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
    cfg = experiment_config(profile)
    for split in (cfg.data.train_split, cfg.data.val_split):
        ds = open_split(cfg, split, progress=False)
        if len(ds) == 0:
            raise DataError(f"{cfg.data.root or isaid_root()}: split {split!r} has no tiles")


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

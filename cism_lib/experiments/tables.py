"""The paper's tables as rows of config switches (Tables 1, 4-8) and the real-tile screen's rows."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cism_lib.errors import ConfigError


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
    # IRN's practice: no gradient into the stem and the first three stages, BatchNorm statistics fixed
    Row("CAM, frozen stem + 3 stages + BN", {"model.method": "cam", "train.frozen_stages": 3, "train.freeze_bn": True}),
    Row("CAM, frozen BN", {"model.method": "cam", "train.freeze_bn": True}),  # IRN, CIAN, RPNet
    # MCIS's pairs: a class of the query first, then a reference holding it, so that a rare class
    # is common to the pair more often (data.pairs.shared_class_chance)
    Row("CISM, class-first pairs", {**CISM, "data.pair_sampling": "class"}),
    Row("CIAN, class-first pairs", {**BASELINE, "data.pair_sampling": "class"}),
    # The converged ablation (Tables 4-8 at the study's length): CISM without one component each,
    # and with MCSG; run with the CISM curve's flags (e.g. --train.aux_from_epoch 2)
    Row("CISM, no PV", _cism(use_pv=False)),
    Row("CISM, no PIE", _cism(use_pie=False)),
    Row("CISM, no SLSC", _cism(use_slsc=False, losses=NO_SLSC)),
    Row("CISM, no L_csm", _cism(losses=("ml", "sl", "nsc"))),
    Row("CISM, no L_nsc", _cism(losses=("ml", "sl", "csm"))),
    Row("CISM + MCSG", {**CISM, **WITH_MCSG}),
]
SCREEN_REF = "@screen:"  # a train.init_from value naming another screen row's checkpoint (same seed)


def table_rows(table: str) -> list[Row]:
    """The rows of a table, or a ConfigError listing the tables."""
    if table not in TABLES:
        raise ConfigError(f"unknown table {table!r}; choose one of {sorted(TABLES)}")
    return TABLES[table]


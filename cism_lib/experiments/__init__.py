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

Modules, each importing only those listed before it (screen, runs and examples none of each other):
    tables    the rows: Tables 1, 4-8 and the real-tile screen as config switches
    profiles  the presets, plans and budgets, and the rows, seeds and configs each profile runs
    records   results lines: run records, summaries over seeds, the paper beside ours, results CSVs
    screen    the real-tile screen: its runs and their summaries
    runs      running a table's rows, every run and chain of a profile, `make reproduce`'s pool
    examples  figure samples: the CAM figures' runs, statistics, MCSG, CAM / chain examples, inside CISM
Torch and matplotlib, and the library modules that load them, are imported inside the functions
that need them, so that importing the package (for configs and tables) stays quick.
"""
from __future__ import annotations

from cism_lib.config import PROFILES
from cism_lib.errors import ConfigError
from cism_lib.experiments.examples import (FIGURES, cam_examples, chain_examples, chain_figure_runs, dataset_labels,
                                           explore, figure5_labels, figure_runs, focus_class, image_iou,
                                           image_metrics, inside_example, mcsg_distribution, mcsg_examples,
                                           present_classes, statistics_tables, train_live)
from cism_lib.experiments.profiles import _load_profile as _load_profile  # the tests reach it here
from cism_lib.experiments.profiles import (CAM_STAGES, DATA_LABELS, FULL_BUDGET, PLANS, PROFILE_ENV, REAL_CHAIN,
                                           REAL_CRF, REAL_PROFILES, SCREEN_BUDGET, Plan, check_profile_data,
                                           current_profile, data_label, experiment_config, extra_real_root,
                                           interactive, isaid_root, plan_for, planned_rows, profile_config,
                                           repo_root, row_chain, row_config, table1_report, training_config)
from cism_lib.experiments.records import _compute_columns as _compute_columns  # the tests reach them here
from cism_lib.experiments.records import _portable as _portable
from cism_lib.experiments.records import (CAM_METRICS, DESCRIPTIVE, compare, compare_table1, compare_table2,
                                          merge_lines, metrics_frame, paper_table, per_class_iou, protocol_text,
                                          read_history, run_record, styled, summarise, write_csv, write_table)
from cism_lib.experiments.runs import (default_workers, prefer_gpu, prepare_runs, profile_chains, profile_runs,
                                       run_configs, run_rows)
from cism_lib.experiments.screen import _screen_row_config as _screen_row_config  # the tests reach it here
from cism_lib.experiments.screen import (SCREEN_GRADS, SCREEN_METRICS, run_screen, screen_config, screen_per_class,
                                         screen_summary, with_screen_budget)
from cism_lib.experiments.tables import BASELINE, CISM, NO_SLSC, SCREEN, SCREEN_REF, TABLES, WITH_MCSG, Row, table_rows
from cism_lib.outputs import ROOT, output_dir
from cism_lib.runfolder import ISAID_ENV

__all__ = [
    "PROFILES", "TABLES", "PLANS", "Row", "Plan", "repo_root", "current_profile", "profile_config",
    "experiment_config", "extra_real_root", "check_profile_data", "REAL_PROFILES", "output_dir",
    "row_config", "planned_rows", "run_rows", "per_class_iou",
    "summarise", "paper_table", "compare", "compare_table1", "compare_table2", "write_table", "write_csv", "merge_lines",
    "figure5_labels", "statistics_tables", "mcsg_examples", "mcsg_distribution", "read_history",
    "train_live", "cam_examples", "focus_class", "image_metrics", "image_iou", "present_classes",
    "inside_example", "explore", "FIGURES", "figure_runs", "run_configs", "metrics_frame", "prefer_gpu",
    "isaid_root", "SCREEN", "SCREEN_BUDGET", "screen_config", "run_screen", "screen_summary",
    # the other names callers reach through the package
    "ConfigError", "ROOT", "ISAID_ENV", "PROFILE_ENV", "CAM_STAGES", "DATA_LABELS", "FULL_BUDGET", "REAL_CHAIN",
    "REAL_CRF", "interactive", "plan_for", "data_label", "row_chain", "table1_report", "training_config",
    "table_rows", "BASELINE", "CISM", "NO_SLSC", "WITH_MCSG", "SCREEN_REF", "CAM_METRICS", "DESCRIPTIVE",
    "run_record", "protocol_text", "styled", "SCREEN_METRICS", "SCREEN_GRADS", "with_screen_budget",
    "screen_per_class", "profile_runs", "profile_chains", "default_workers", "prepare_runs", "dataset_labels",
    "chain_examples", "chain_figure_runs",
]

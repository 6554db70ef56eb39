# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Table 6: single-label secondary classification (SLSC)
#
# SLSC (Eq. 14–17) re-scores each class from its own CAM region, so classes that share background context are told apart. The paper adds it to CIAN, to an RPNet-like model (prototypes without PIE and without the cross-image losses) and to CISM.
#
# Each row is a set of config overrides (`experiments.TABLES['table6']`); finished runs are reused by config hash, so running this notebook twice is fast. The profile's plan (`experiments.PLANS`) says which rows and how many seeds it runs; rows it does not run show NaN, never the paper's value.

# %% tags=["parameters"]
# Parameters: papermill may override any of these.
PROFILE = None   # smoke | cpu | paper | isaid512; None: the CISM_PROFILE environment variable (default cpu)
SEEDS = None     # None: the profile's plan; e.g. [0, 1, 2] for three seeds of every row

# %%
from cism_lib import display, experiments, pipeline, viz

PROFILE = PROFILE or experiments.current_profile()
PROFILE

# %% [markdown]
# ## The configurations
#
# The overrides of each row, applied to the profile's config:

# %%
[(row.label, dict(row.overrides)) for row in experiments.TABLES['table6']]

# %% [markdown]
# ## Run (or reuse) every planned row × seed
#
# One line per run, in percent: the CAM mIoU/OA of each split, scored with the background threshold chosen on the other split (shown), and the all-background line (what a model that finds nothing scores). The CSV under `results/` keeps every column and full precision.

# %%
runs = experiments.run_rows('table6', PROFILE, seeds=SEEDS)
experiments.write_table(runs, 'table6_slsc_runs', PROFILE)
display.runs_view(runs)

# %% [markdown]
# ## Ours beside the paper's
#
# Percentages; `ours` cells are mean ± sample standard deviation over seeds (a bare number: one seed), `–` a value the paper did not publish or a row this profile did not run. The paper ran on the real iSAID with a ResNet-50 for 20 epochs; the caption says what ours ran on and how it was scored.

# %%
table = experiments.compare('table6', runs)
experiments.write_table(table, 'table6_slsc', PROFILE)
experiments.styled(table)

# %%
fig = viz.comparison_bars(table)
viz.save_figure(fig, 'table6_slsc', PROFILE)
fig

# %% [markdown]
# ## Reading the table
#
# Written from the numbers above (`display.reading`): each row's change against the baseline, the paper's and ours, and whether ours exceeds the seed spread.

# %%
display.markdown(display.reading(table))

# %% [markdown]
# Notes on the rows: The paper reports a gain from SLSC in all three models (+3.8, +2.3 and +1.3 mIoU). Our RPNet-like row without SLSC has no head that uses the prototypes, so it trains like CIAN.

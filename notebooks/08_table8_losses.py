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
# # Table 8: the loss terms
#
# The total loss (Eq. 18) adds to the multi-label loss L_ml the single-label loss L_sl, the common-semantic-mining loss L_csm and the non-common semantic contrastive loss L_nsc. All rows train CISM with MCSG (the paper's full row, 34.1, is its CISM + MCSG); a row without L_sl switches SLSC off.
#
# Each row is a set of config overrides (`experiments.TABLES['table8']`); finished runs are reused by config hash, so running this notebook twice is fast. The profile's plan (`experiments.PLANS`) says which rows and how many seeds it runs; rows it does not run show NaN, never the paper's value.

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
[(row.label, dict(row.overrides)) for row in experiments.TABLES['table8']]

# %% [markdown]
# ## Run (or reuse) every planned row × seed
#
# One line per run, in percent: the CAM mIoU/OA of each split, scored with the background threshold chosen on the other split (shown), and the all-background line (what a model that finds nothing scores). The CSV under `results/` keeps every column and full precision.

# %%
runs = experiments.run_rows('table8', PROFILE, seeds=SEEDS)
experiments.write_table(runs, 'table8_losses_runs', PROFILE)
display.runs_view(runs)

# %% [markdown]
# ## Ours beside the paper's
#
# Percentages; `ours` cells are mean ± sample standard deviation over seeds (a bare number: one seed), `–` a value the paper did not publish or a row this profile did not run. The paper ran on the real iSAID with a ResNet-50 for 20 epochs; the caption says what ours ran on and how it was scored.

# %%
table = experiments.compare('table8', runs)
experiments.write_table(table, 'table8_losses', PROFILE)
experiments.styled(table)

# %%
fig = viz.comparison_bars(table)
viz.save_figure(fig, 'table8_losses', PROFILE)
fig

# %% [markdown]
# ## Reading the table
#
# Written from the numbers above (`display.reading`): each row's change against the baseline, the paper's and ours, and whether ours exceeds the seed spread.

# %%
display.markdown(display.reading(table))

# %% [markdown]
# Notes on the rows: In the paper L_nsc alone hurts (−6.4 mIoU) while L_csm helps (+3.1); both together give the best CAMs.

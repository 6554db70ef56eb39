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
PROFILE = None   # smoke | cpu | paper; None: the CISM_PROFILE environment variable (default cpu)
SEEDS = None     # None: the profile's plan; e.g. [0, 1, 2] for three seeds of every row

# %%
from cism_lib import experiments, pipeline, viz

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
# One line per run: its folder, the data it ran on, how the CAMs were scored and the metrics (fractions).

# %%
runs = experiments.run_rows('table8', PROFILE, seeds=SEEDS)
experiments.write_table(runs, 'table8_losses_runs', PROFILE)
runs

# %% [markdown]
# ## Ours beside the paper's
#
# Percentages; `ours … std` is the sample standard deviation over seeds (NaN with one seed). The paper ran on the real iSAID with a ResNet-50 for 20 epochs; the `data` and `protocol` columns say what ours ran on.

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
# In the paper L_nsc alone hurts (−6.4 mIoU) while L_csm helps (+3.1); both together give the best CAMs.

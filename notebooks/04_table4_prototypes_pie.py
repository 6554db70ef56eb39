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
# # Table 4: prototype vectors (PV) and PIE
#
# Prototype vectors average the features of each class's *confident* CAM region (Eq. 1–5, with a dropout gate of rate η); PIE lets the query's and reference's prototypes enhance each other (Eq. 6–9). The paper adds them one after the other to the CIAN baseline.
#
# Each row is a set of config overrides (`experiments.TABLES['table4']`); finished runs are reused by config hash, so running this notebook twice is fast. The profile's plan (`experiments.PLANS`) says which rows and how many seeds it runs; rows it does not run show NaN, never the paper's value.

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
[(row.label, dict(row.overrides)) for row in experiments.TABLES['table4']]

# %% [markdown]
# ## Run (or reuse) every planned row × seed
#
# One line per run: its folder, the data it ran on, how the CAMs were scored and the metrics (fractions).

# %%
runs = experiments.run_rows('table4', PROFILE, seeds=SEEDS)
experiments.write_table(runs, 'table4_pv_pie_runs', PROFILE)
runs

# %% [markdown]
# ## Ours beside the paper's
#
# Percentages; `ours … std` is the sample standard deviation over seeds (NaN with one seed). The paper ran on the real iSAID with a ResNet-50 for 20 epochs; the `data` and `protocol` columns say what ours ran on.

# %%
table = experiments.compare('table4', runs)
experiments.write_table(table, 'table4_pv_pie', PROFILE)
experiments.styled(table)

# %%
fig = viz.comparison_bars(table)
viz.save_figure(fig, 'table4_pv_pie', PROFILE)
fig

# %% [markdown]
# ## Reading the table
#
# In our model the prototypes only act through the heads that use them, so `+PV` is CISM without PIE and SLSC (the prototypes feed the CSM/NSC heads) and `+PV+PIE` is CISM without SLSC. The paper reports +0.7 mIoU for PV (with lower OA) and +3.8 more with PIE.

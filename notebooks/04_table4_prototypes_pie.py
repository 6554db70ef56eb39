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
[(row.label, dict(row.overrides)) for row in experiments.TABLES['table4']]

# %% [markdown]
# ## Run (or reuse) every planned row × seed
#
# One line per run, in percent: the CAM mIoU/OA of each split, scored with the background threshold chosen on the other split (shown), and the all-background line (what a model that finds nothing scores). The CSV under `results/` keeps every column and full precision.

# %%
runs = experiments.run_rows('table4', PROFILE, seeds=SEEDS)
experiments.write_table(runs, 'table4_pv_pie_runs', PROFILE)
display.runs_view(runs)

# %% [markdown]
# ## Ours beside the paper's
#
# Percentages; `ours` cells are mean ± sample standard deviation over seeds (a bare number: one seed), `–` a value the paper did not publish or a row this profile did not run. The paper ran on the real iSAID with a ResNet-50 for 20 epochs; the caption says what ours ran on and how it was scored.

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
# Written from the numbers above (`display.reading`): each row's change against the baseline, the paper's and ours, and whether ours exceeds the seed spread.

# %%
display.markdown(display.reading(table))

# %% [markdown]
# Notes on the rows: In our model the prototypes only act through the heads that use them, so `+PV` is CISM without PIE and SLSC (the prototypes feed the CSM/NSC heads) and `+PV+PIE` is CISM without SLSC. The paper reports +0.7 mIoU for PV (with lower OA) and +3.8 more with PIE.

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
# # Table 7: Multi-Category Sample Generation (MCSG)
#
# MCSG replaces some low-category queries by 2×2 mosaics of four low-category images (`02_mcsg`). The paper applies it to CIAN and to CISM.
#
# Each row is a set of config overrides (`experiments.TABLES['table7']`); finished runs are reused by config hash, so running this notebook twice is fast. The profile's plan (`experiments.PLANS`) says which rows and how many seeds it runs; rows it does not run show NaN, never the paper's value.

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
[(row.label, dict(row.overrides)) for row in experiments.TABLES['table7']]

# %% [markdown]
# ## Run (or reuse) every planned row × seed
#
# One line per run, in percent: the CAM mIoU/OA of each split, scored with the background threshold chosen on the other split (shown), and the all-background line (what a model that finds nothing scores). The CSV under `results/` keeps every column and full precision.

# %%
runs = experiments.run_rows('table7', PROFILE, seeds=SEEDS)
experiments.write_table(runs, 'table7_mcsg_runs', PROFILE)
display.runs_view(runs)

# %% [markdown]
# ## Ours beside the paper's
#
# Percentages; `ours` cells are mean ± sample standard deviation over seeds (a bare number: one seed), `–` a value the paper did not publish or a row this profile did not run. The paper ran on the real iSAID with a ResNet-50 for 20 epochs; the caption says what ours ran on and how it was scored.

# %%
table = experiments.compare('table7', runs)
experiments.write_table(table, 'table7_mcsg', PROFILE)
experiments.styled(table)

# %%
fig = viz.comparison_bars(table)
viz.save_figure(fig, 'table7_mcsg', PROFILE)
fig

# %% [markdown]
# ## Reading the table
#
# Written from the numbers above (`display.reading`): each row's change against the baseline, the paper's and ours, and whether ours exceeds the seed spread.

# %%
display.markdown(display.reading(table))

# %% [markdown]
# Notes on the rows: The paper reports +1.4 mIoU on CIAN and +1.9 on CISM. SynthAerial has fewer single-category images than iSAID, which leaves MCSG less to fix.

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
# # Table 5: the gate-map dropout rate η
#
# η is the rate at which the gate map (Eq. 5) drops positions of the confident region before the prototypes are pooled. The paper finds η = 0.3 best.
#
# Each row is a set of config overrides (`experiments.TABLES['table5']`); finished runs are reused by config hash, so running this notebook twice is fast. The profile's plan (`experiments.PLANS`) says which rows and how many seeds it runs; rows it does not run show NaN, never the paper's value.

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
[(row.label, dict(row.overrides)) for row in experiments.TABLES['table5']]

# %% [markdown]
# ## Run (or reuse) every planned row × seed
#
# One line per run: its folder, the data it ran on, how the CAMs were scored and the metrics (fractions).

# %%
runs = experiments.run_rows('table5', PROFILE, seeds=SEEDS)
experiments.write_table(runs, 'table5_eta_runs', PROFILE)
runs

# %% [markdown]
# ## Ours beside the paper's
#
# Percentages; `ours … std` is the sample standard deviation over seeds (NaN with one seed). The paper ran on the real iSAID with a ResNet-50 for 20 epochs; the `data` and `protocol` columns say what ours ran on.

# %%
table = experiments.compare('table5', runs)
experiments.write_table(table, 'table5_eta', PROFILE)
experiments.styled(table)

# %%
fig = viz.comparison_bars(table)
viz.save_figure(fig, 'table5_eta', PROFILE)
fig

# %% [markdown]
# ## Reading the table
#
# The paper's curve rises from η = 0.1 to 0.3 and falls after; on small synthetic data the differences between rows can be within the seed spread (compare with the std column).

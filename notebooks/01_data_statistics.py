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
# # Figure 5: how many categories does an image hold?
#
# The paper's Figure 5 motivates CISM: in PASCAL VOC 64% of the images hold a single category,
# in aerial datasets fewer than 30%; on iSAID 63% hold 2–3 categories. Cross-image mining helps
# most when images share *some* but not all classes. We measure the same histogram on SynthAerial
# (whose generator draws the category count from a distribution close to iSAID's) and, when the
# environment variable `CISM_ISAID_ROOT` points at iSAID patches, on the real tiles.

# %% tags=["parameters"]
# Parameters: papermill may override any of these.
PROFILE = None   # smoke | cpu | paper | isaid512; None: the CISM_PROFILE environment variable (default cpu)
MAX_BIN = 5      # the last histogram bar counts MAX_BIN or more categories

# %%
from cism_lib import experiments, pipeline, viz

PROFILE = PROFILE or experiments.current_profile()
PROFILE

# %% [markdown]
# ## Image-level labels
#
# Labels come from the masks (a class is present with at least `data.min_pixels` pixels) and are cached beside the data.

# %%
labels = experiments.figure5_labels(PROFILE)
{name: lab.shape for name, lab in labels.items()}

# %% [markdown]
# ## Category counts and per-class image counts
#
# Written to `results/` as CSV.

# %%
stats = experiments.statistics_tables(labels, MAX_BIN)
experiments.write_table(stats['categories'], 'figure5_categories', PROFILE)
experiments.write_table(stats['classes'], 'class_image_counts', PROFILE)
stats['categories']

# %%
stats['classes']

# %% [markdown]
# ## Figure 5
#
# Left: our histograms. Right: the ranges the paper's text states for iSAID and VOC (`cism_lib.data.stats.PAPER_FIGURE5`: its plot is not transcribed, only the numbers its text gives) beside ours.

# %%
fig = viz.figure5(labels, max_bin=MAX_BIN)
viz.save_figure(fig, 'figure5', PROFILE)
fig

# %%
fig = viz.class_counts_figure(stats['classes'])
viz.save_figure(fig, 'class_image_counts', PROFILE)
fig

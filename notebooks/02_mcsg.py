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
# # Figure 6: Multi-Category Sample Generation (MCSG)
#
# Aerial datasets hold many low-category images (1–3 classes) whose pairs share little context.
# MCSG (section 3.3) stitches four low-category images into one 2×2 mosaic in random order, each
# whole tile scaled to fit its cell, so the classifier sees more multi-category scenes. The
# mosaic's label is the union of the four image-level labels — exact because no tile is cropped,
# and read from the labels alone: training never opens a pixel mask (the masks below are drawn for
# the figure only). In training a low-category query is replaced by a mosaic with a probability
# that gives about one mosaic per batch, as the paper describes.

# %% tags=["parameters"]
# Parameters: papermill may override any of these.
PROFILE = None   # smoke | cpu | paper | isaid512; None: the CISM_PROFILE environment variable (default cpu)
N_MOSAICS = 4    # mosaics shown
N_QUERIES = 2000  # training queries drawn for the distribution

# %%
from cism_lib import display, experiments, pipeline, viz

PROFILE = PROFILE or experiments.current_profile()
PROFILE
cfg = experiments.experiment_config(PROFILE)

# %% [markdown]
# ## Mosaics, and the categories per training query they bring
#
# Left: four mosaics, the stitched image above its ground truth (drawn for the figure; the legend
# names the classes). The title counts the classes of the mosaic's label. Right: the share of
# training queries with 0, 1, 2, … categories as the pair sampler draws them, before and with MCSG
# (the mosaics really stitched): look for the mass moving from 1–2 categories towards 3+.

# %%
mosaics = experiments.mcsg_examples(cfg, N_MOSAICS)
before, after = experiments.mcsg_distribution(cfg, N_QUERIES)
fig = viz.figure6_mosaics(mosaics, before=before, after=after)
viz.save_figure(fig, 'figure6_mcsg', PROFILE)
fig

# %% [markdown]
# The same distribution as numbers, % of the queries drawn (`results/figure6_categories.csv`
# keeps counts and fractions), and what it shows (written from it by `display.reading_figure6`):

# %%
shift = experiments.statistics_tables({'before MCSG': before, 'with MCSG': after})['categories']
experiments.write_table(shift, 'figure6_categories', PROFILE)
display.category_shift(shift)

# %%
display.markdown(display.reading_figure6(shift))

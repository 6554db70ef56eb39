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
# # CISM in pictures
#
# Weakly supervised semantic segmentation learns pixel masks from **image-level labels** only
# ("this tile contains a plane and a storage tank"). A classifier's *class activation maps* (CAMs)
# say where it looked; thresholded and refined by a dense CRF they become **pseudo-masks** that
# train an ordinary segmentation network.
#
# CISM (Cross-Image Semantic Mining) trains the classifier on **pairs of images that share a
# class**: prototype vectors of confident regions (PV), their interactive enhancement across the
# pair (PIE), a single-label secondary classification (SLSC) and two cross-image losses push the
# CAMs to cover whole objects. This notebook trains the CIAN baseline and CISM on a few hundred
# SynthAerial tiles and compares their CAMs on held-out images.

# %% tags=["parameters"]
# Parameters: papermill may override any of these.
PROFILE = None   # smoke | cpu | paper | isaid512; None: the CISM_PROFILE environment variable (default cpu)
N_IMAGES = 4     # images shown

# %%
from cism_lib import display, experiments, pipeline, viz

PROFILE = PROFILE or experiments.current_profile()
PROFILE

# %% [markdown]
# ## Two classifiers
#
# The baseline (CIAN: cross-image affinity, multi-label loss only) and the full CISM, as rows of the Table 1 experiment; `run_configs` trains each (or reuses a finished run), makes CAMs and scores them.

# %%
runs = experiments.figure_runs('figure7', PROFILE)
folders = experiments.run_configs(runs)
folders

# %% [markdown]
# CAM quality in percent (mIoU and overall accuracy of the thresholded CAMs; each split is scored with the background threshold chosen on the other split, shown; all-BG is what a model that predicts only background scores):

# %%
display.metrics_view(experiments.metrics_frame(folders))

# %% [markdown]
# ## CAMs and a pseudo-mask
#
# Rows: the validation images with the most categories. Columns: the image, its ground truth, each model's CAM of one class the image contains (the largest in its ground truth), with that class's IoU on the image and the CRF pseudo-mask made from CISM's CAM.

# %%
samples = experiments.cam_examples(runs, split='val', n=N_IMAGES)
fig = viz.cam_panel(samples)
viz.save_figure(fig, 'quickstart_cams', PROFILE)
fig

# %%
display.markdown(display.figure_reading(samples))

# %% [markdown]
# Next: `01_data_statistics` (why multi-category scenes are hard), `02_mcsg` (the mosaic augmentation), `03_train` (one training run with live curves) and the tables 04–09.

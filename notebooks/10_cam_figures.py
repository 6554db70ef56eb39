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
# # Figures 7–9: CAMs side by side
#
# Figure 7 compares the baseline with CISM, Figure 8 the steps of Table 4 (baseline, +PV,
# +PV+PIE), Figure 9 the SLSC comparison of Table 6 (baseline, RPNet-like, CISM, CISM + SLSC).
# Each row: image, ground truth, the CAM of each model and the CRF pseudo-mask of the last one.
# Each image shows the CAM of one class it contains (the largest in its ground truth), titled with
# that class's IoU on the image at the run's background threshold; the pseudo-mask with its mIoU.
# Only rows the profile's plan runs are shown (the smoke profile shows fewer columns).

# %% tags=["parameters"]
# Parameters: papermill may override any of these.
PROFILE = None   # smoke | cpu | paper | isaid512; None: the CISM_PROFILE environment variable (default cpu)
N_IMAGES = 4     # images per figure

# %%
from cism_lib import display, experiments, pipeline, viz

PROFILE = PROFILE or experiments.current_profile()
PROFILE

# %% [markdown]
# ## Figure 7: baseline vs CISM

# %%
runs = experiments.figure_runs('figure7', PROFILE)
folders = experiments.run_configs(runs)
samples = experiments.cam_examples(runs, 'val', N_IMAGES)
fig = viz.cam_panel(samples)
viz.save_figure(fig, 'figure7_cams', PROFILE)
fig

# %%
display.markdown(display.figure_reading(samples))

# %% [markdown]
# ## Figure 8: prototype vectors and PIE

# %%
runs = experiments.figure_runs('figure8', PROFILE)
folders = experiments.run_configs(runs)
samples = experiments.cam_examples(runs, 'val', N_IMAGES)
fig = viz.cam_panel(samples)
viz.save_figure(fig, 'figure8_cams', PROFILE)
fig

# %%
display.markdown(display.figure_reading(samples))

# %% [markdown]
# ## Figure 9: SLSC

# %%
runs = experiments.figure_runs('figure9', PROFILE)
folders = experiments.run_configs(runs)
samples = experiments.cam_examples(runs, 'val', N_IMAGES)
fig = viz.cam_panel(samples)
viz.save_figure(fig, 'figure9_cams', PROFILE)
fig

# %%
display.markdown(display.figure_reading(samples))

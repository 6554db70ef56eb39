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
# # Training one classifier
#
# The classifier is trained on query/reference pairs that share a class (`PairDataset`), with the
# multi-label loss L_ml and CISM's auxiliary losses (L_sl, L_csm, L_nsc; Eq. 18–27), Adam and a
# poly learning rate. A GPU is used when there is one. The curves below redraw after each epoch;
# the checkpoint and a JSON-lines log go to the run folder, and a finished run is reused.

# %% tags=["parameters"]
# Parameters: papermill may override any of these.
PROFILE = None   # smoke | cpu | paper | isaid512; None: the CISM_PROFILE environment variable (default cpu)
METHOD = 'cism'  # cam | cian | cism
EPOCHS = None     # None: the profile's

# %%
from cism_lib import display, experiments, pipeline, viz

PROFILE = PROFILE or experiments.current_profile()
PROFILE

# %%
overrides = {'train.epochs': EPOCHS} if EPOCHS else {}
cfg = experiments.prefer_gpu(experiments.training_config(PROFILE, METHOD, **overrides))  # Table 1's run of METHOD
pipeline.run_dir(cfg)

# %% [markdown]
# ## Train with live curves

# %%
rd = experiments.train_live(cfg)

# %% [markdown]
# ## The training log
#
# One line per epoch: the mean of each loss term, the learning rate and the throughput.

# %%
history = experiments.read_history(rd)
history

# %%
fig = viz.training_curves(history)
viz.save_figure(fig, f'training_curves_{cfg.model.method}', PROFILE)
fig

# %% [markdown]
# ## CAMs and their quality
#
# The remaining CAM stages: multi-scale CAMs for both splits and their mIoU with the background threshold chosen on the other split.

# %%
rd = pipeline.run_all(cfg, stages=experiments.CAM_STAGES)
display.metrics_view(experiments.metrics_frame({cfg.model.method: rd}))

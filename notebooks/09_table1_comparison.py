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
# # Tables 1–2: CAM, CIAN and CISM through the whole chain
#
# Per-class IoU of the CAMs (Table 1), then the CRF pseudo-masks and a DeepLab trained on them
# (Table 2's image-level rows). On SynthAerial always; on the real iSAID tiles too when
# `CISM_ISAID_ROOT` is set (with the `isaid512` preset and the profile's real-data budget).

# %% tags=["parameters"]
# Parameters: papermill may override any of these.
PROFILE = None   # smoke | cpu | paper | isaid512; None: the CISM_PROFILE environment variable (default cpu)
SEEDS = None     # None: the profile's plan

# %%
from cism_lib import display, experiments, pipeline, viz

PROFILE = PROFILE or experiments.current_profile()
PROFILE

# %% [markdown]
# ## Run the whole chain for each model
#
# Train → CAMs → CAM scores → pseudo-masks → DeepLab; finished stages are reused. On the real
# tiles (`isaid512`) the pseudo-masks and DeepLab are a *chain* of each classifier run
# (`cism chain`, in `<run>/chain/<hash>/`: masks of every training tile, DeepLab scored on all of
# val), and Table 1 reports the CAMs of val (threshold chosen on train); the SynthAerial profiles
# report train (threshold chosen on val). The table keeps what a reader compares: each run's
# background thresholds and its CAM, pseudo-mask and DeepLab scores (how it computed, its
# precision and thread count, is in `results/table1_runs.csv`).

# %%
REPORT = experiments.table1_report(PROFILE)
runs = experiments.run_rows('table1', PROFILE, seeds=SEEDS, stages=pipeline.STAGES)
runs = experiments.per_class_iou(runs, f'cam_{REPORT}')
experiments.write_table(runs, 'table1_runs', PROFILE)
display.runs_view(runs.filter(['row', 'seed', 'run', 'cam_threshold_train', 'cam_threshold_val', 'cam_miou_train',
                                'cam_miou_val', 'cam_oa_train', 'pseudo_miou_train', 'seg_miou_val', 'seg_oa_val']))

# %% [markdown]
# ## Table 1: per-class IoU (%)
#
# The paper's line and ours for each model; class abbreviations as in the paper (BG background, PL plane, …).

# %%
table1 = experiments.compare('table1', runs, report=REPORT)
experiments.write_table(table1, 'table1_per_class', PROFILE)
experiments.styled(table1)

# %% [markdown]
# The same as bars: our models side by side per class, the paper's values as black ticks.

# %%
fig = viz.per_class_bars(table1)
viz.save_figure(fig, 'table1_per_class', PROFILE)
fig

# %% [markdown]
# What our Table 1 shows (written from the table above by `display.reading_table1`):

# %%
display.markdown(display.reading_table1(table1))

# %% [markdown]
# ## Table 2 analogue: pseudo-masks and DeepLab (%)
#
# The paper lists DeepLab mIoU on iSAID val; ours adds the CAMs, the pseudo-masks of the
# training split (dense CRF; threshold selected on val on SynthAerial, on train on the real
# tiles) and DeepLab on val (single scale, no CRF), each as mIoU and OA.

# %%
table2 = experiments.compare('table2', runs, report=REPORT)
experiments.write_table(table2, 'table2_supervision', PROFILE)
experiments.styled(table2)

# %% [markdown]
# What our Table 2 shows (written from the table above by `display.reading_table2`):

# %%
display.markdown(display.reading_table2(table2))

# %% [markdown]
# ## The chain on images: CAMs, pseudo-masks and DeepLab
#
# Where the profile chains its Table 1 runs (`isaid512`): for val images, each model's CAM (the
# largest class of the image, with its IoU) and its DeepLab prediction; for training images the
# pseudo-mask DeepLab learned from as well. Each mask is titled with its mIoU on that image.

# %%
chains = experiments.chain_figure_runs(runs)
chain_fig = None
if chains:
    chain_fig = viz.cam_panel(experiments.chain_examples(chains, 'val', 4))
    viz.save_figure(chain_fig, 'chain_val', PROFILE)
chain_fig

# %%
train_fig = None
if chains:
    train_fig = viz.cam_panel(experiments.chain_examples(chains, 'train', 4))
    viz.save_figure(train_fig, 'chain_train', PROFILE)
train_fig

# %% [markdown]
# ## The real iSAID tiles
#
# Skipped unless `CISM_ISAID_ROOT` is set, and in a profile that runs on the real tiles already (`isaid512`, `paper`: the tables above are theirs).

# %%
real_root = experiments.extra_real_root(PROFILE)  # None when PROFILE is on real tiles already
real_root

# %%
real_table = None
if real_root is not None:
    real = experiments.run_rows('table1', PROFILE, seeds=[0], stages=pipeline.STAGES,
                                base=experiments.experiment_config(PROFILE, real=True))
    real = experiments.per_class_iou(real, 'cam_train')
    experiments.write_table(experiments.compare('table1', real), 'table1_per_class_isaid', PROFILE)
    experiments.write_table(experiments.compare('table2', real), 'table2_supervision_isaid', PROFILE)
    real_table = display.table(experiments.compare('table1', real))
real_table

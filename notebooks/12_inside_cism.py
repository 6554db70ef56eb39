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
# # Inside CISM: one pair, every step of section 3
#
# The other notebooks show what CISM *outputs*. This one opens it up: one trained CISM model and
# one query/reference pair that share a class, and, drawn from live tensors of a single forward
# pass (`cism_lib.models.inside.trace`), each step of the method with its equation — the paper's
# Figures 1–4 rebuilt from the model. The library computes every intermediate; this notebook only
# draws. The pair comes from the real iSAID tiles when `CISM_ISAID_ROOT` is set, from SynthAerial
# otherwise. The ground truth is drawn for you; the model never saw it.

# %% tags=["parameters"]
# Parameters: papermill may override any of these.
PROFILE = None   # smoke | cpu | paper | isaid512; None: the CISM_PROFILE environment variable (default cpu)
SPLIT = 'val'
INDEX_Q = 0      # the query image of the split
INDEX_R = None   # the reference; None: the first other image sharing a class with the query

# %%
from cism_lib import experiments, viz
from cism_lib.models.inside import STEPS

PROFILE = PROFILE or experiments.current_profile()
if experiments.extra_real_root(PROFILE) is not None:   # the real tiles: Table 1's CISM run on them
    row = {r.label: r for r in experiments.table_rows('table1')}['CISM']
    cfg = experiments.row_config(row, PROFILE, 0, base=experiments.experiment_config(PROFILE, real=True),
                                 table='table1')
else:                                       # SynthAerial: the full CISM of the CAM figures
    cfg = experiments.figure_runs('figure7', PROFILE)['CISM +SLSC']
ex = experiments.inside_example(cfg, SPLIT, INDEX_Q, INDEX_R)
print(f"{ex['data']}: query {ex['ids'][0]}, reference {ex['ids'][1]}; τ = {ex['tau']}, η = {ex['eta']}")
print('classes: query', [ex['classes'].names[k + 1] for k in ex['labels']['l_q'].nonzero()[0]],
      '| reference', [ex['classes'].names[k + 1] for k in ex['labels']['l_r'].nonzero()[0]],
      '| common l_co', [ex['classes'].names[k + 1] for k in ex['labels']['l_co'].nonzero()[0]])

# %% [markdown]
# Every step `trace` returns, with the equation it implements (keys end in `_q` / `_r` per image):

# %%
STEPS

# %% [markdown]
# ## 1. Class activation maps M (Eq. 10–13)
#
# The backbone (with CIAN's cross-image affinity, which lets each image's features attend to the
# other's) gives features F_n; the classifier W_c turns them into one map per class, and M divides
# each map by its maximum, so every class map peaks at 1. Look for: which regions the classes of
# the label light up, and whether a class *not* in an image's label is quiet there. M is what the
# CAM stage thresholds into pseudo-masks.

# %%
fig = viz.inside_cams(ex)
viz.save_figure(fig, 'inside_cams', PROFILE)
fig

# %% [markdown]
# ## 2. Prototype maps F_c and confident regions R (Eq. 1–5)
#
# A 1×1 convolution and a sigmoid map F_n to F_c = σ(W F_n), D channels in (0, 1). For each class,
# the pixels where M_k > τ form the confident region R_k; the gate Γ (dropout of rate η in
# training, all ones here in eval) drops some of them so the prototype does not always come from
# the same most-discriminative pixels. The prototype P_k is the average of F_c over R_k·Γ.
# Look for: F_c's value range (a sigmoid output: all positive, which pushes every cosine between
# two F_c vectors towards 1 — the *centred similarities* reading of `docs/method.md` tests this),
# and how much of the image each R_k covers.

# %%
fig = viz.inside_prototypes(ex)
viz.save_figure(fig, 'inside_prototypes', PROFILE)
fig

# %% [markdown]
# ## 3. Matching maps A (Eq. 6–7) and enhanced prototypes (Eq. 8–9)
#
# PIE transforms F_c with a shared 1×1 layer into X, and for each query pixel takes its best cosine
# to any reference pixel: A_q(p) = max_p' cos(X_Q(p), X_R(p')), min-max normalised over the image
# (and A_r likewise). High A marks what the two images share. Each prototype is then enhanced by
# the other image's A-weighted features: P' = P + Σ A·X / Σ A. Look for: A high on the common
# class, low elsewhere.

# %%
fig = viz.inside_matching(ex)
viz.save_figure(fig, 'inside_matching', PROFILE)
fig

# %%
import numpy as np
shift = np.linalg.norm(ex['steps']['P_enh_q'] - ex['steps']['P_q'], axis=1)
{ex['classes'].names[k + 1]: round(float(v), 3) for k, v in enumerate(shift) if ex['labels']['l_q'][k]}

# %% [markdown]
# Above: how far PIE moved each of the query's labelled prototypes (‖P' − P‖).
#
# ## 4. Prototype similarity (Eq. 14) and the class-specific weighting
#
# For each class the similarity S_k(x) = ReLU(cos(P'_k, F_c(x))) says how much pixel x looks like
# the class's prototype; M_k ⊙ S_k weights the class's features for the secondary classifier.
# Look for: how narrow S's range is (printed in each title) — a narrow band means the prototype
# barely selects anything, one of the hypotheses of issue 13.

# %%
fig = viz.inside_similarity(ex)
viz.save_figure(fig, 'inside_similarity', PROFILE)
fig

# %% [markdown]
# ## 5. The secondary scores and the cross-image predictions (Eq. 16–27)
#
# γ (Eq. 16, softmax of the CAMs) weights each pixel's confidence; the class-specific features are
# pooled and scored again (Z̃, Eq. 17), and L_sl (Eq. 19–21) asks each class-k feature to score
# class k only. Ψ scores the A-weighted features of both images (y_co, Eq. 23) against the common
# label l_co (L_csm, Eq. 24), and the (1 − A)-weighted features of the query (y_q\co, Eq. 25)
# against its non-common label l_q\co (L_nsc, Eq. 27). Green bars are classes whose label is 1:
# a trained model scores them high and the grey ones low.

# %%
fig = viz.inside_scores(ex)
viz.save_figure(fig, 'inside_scores', PROFILE)
fig

# %% [markdown]
# ## Try this
#
# - **Pair an image with itself** (the cell below): A is high everywhere, l_q\co is empty, and the
#   query's and reference's steps are the same.
# - **Swap query and reference**: `experiments.inside_example(cfg, SPLIT, *ex['indices'][::-1])`;
#   which maps swap exactly, and which do not?
# - **Change η or τ**: `from cism_lib.config import replace`, then
#   `experiments.inside_example(replace(cfg, **{'model.eta': 0.6}), SPLIT, INDEX_Q)` trains (or
#   reuses) a model with that setting — a new run folder, as its config hash differs.
# - **Centred similarities**: the same with `{'model.sim_centre': True}`, and compare the range of
#   S in section 4 and of A in section 3.

# %%
same = experiments.inside_example(cfg, SPLIT, INDEX_Q, INDEX_Q)
viz.inside_matching(same)

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
# # Explore: CAM → threshold → CRF, live
#
# Pick a validation image, a class, the background threshold and the dense-CRF parameters; the
# CAM of that class, the thresholded label map, the CRF-refined mask and their IoU against the
# ground truth update as you move the sliders. Uses the full CISM run of the profile (trained if
# needed). Headless (papermill, nbval) the view is drawn once with the defaults.

# %% tags=["parameters"]
# Parameters: papermill may override any of these.
PROFILE = None   # smoke | cpu | paper | isaid512; None: the CISM_PROFILE environment variable (default cpu)
SPLIT = 'val'
INTERACTIVE = None  # None: sliders, unless run headless (CISM_HEADLESS=1: make reproduce, make test)

# %%
from cism_lib import experiments, pipeline, viz

PROFILE = PROFILE or experiments.current_profile()
PROFILE
import ipywidgets as widgets
from cism_lib.classes import ISAID
from cism_lib.config import CrfConfig

# %%
cfg = experiments.figure_runs('figure7', PROFILE)['CISM +SLSC']
rd = pipeline.run_all(cfg, stages=experiments.CAM_STAGES)
threshold = pipeline.read_metrics(rd)[f'cam_threshold_{SPLIT}']
threshold


# %% [markdown]
# The view: one library call computes the masks and IoUs, one draws them.

# %%
def view(index=0, class_name=None, threshold=threshold, bi_sxy=80.0, bi_srgb=13.0,
         bi_compat=10.0, iterations=5):
    crf = CrfConfig(bi_sxy=bi_sxy, bi_srgb=bi_srgb, bi_compat=bi_compat, iterations=iterations)
    class_id = ISAID.names.index(class_name) if class_name else None  # None: the image's largest class
    result = experiments.explore(cfg, SPLIT, index, class_id, threshold, crf)
    display(viz.explore_panel(result))
    print(f"{result['id']}: classes present {result['present']}")


# %% [markdown]
# The sliders (`bi_sxy` is in pixels of a 500-pixel image and scaled to this one, like every CRF width in the library). The class menu offers the classes the chosen image contains (its image-level label) and follows the image slider. Headless runs draw the view once instead: ipywidgets' `interact` made papermill wait forever on an idle kernel there.

# %%
n_images = len(pipeline.open_split(cfg, SPLIT))
if experiments.interactive(INTERACTIVE):
    index_w = widgets.IntSlider(0, 0, n_images - 1, description='index')
    class_w = widgets.Dropdown(options=experiments.present_classes(cfg, SPLIT, 0), description='class')
    index_w.observe(lambda change: setattr(class_w, 'options', experiments.present_classes(cfg, SPLIT, change.new)),
                    names='value')
    widgets.interact(view, index=index_w, class_name=class_w,
                     threshold=widgets.FloatSlider(value=threshold, min=0.0, max=1.0, step=0.05),
                     bi_sxy=widgets.FloatSlider(value=80.0, min=5.0, max=150.0, step=5.0),
                     bi_srgb=widgets.FloatSlider(value=13.0, min=1.0, max=50.0, step=1.0),
                     bi_compat=widgets.FloatSlider(value=10.0, min=0.0, max=20.0, step=1.0),
                     iterations=widgets.IntSlider(5, 1, 20))
else:
    view()

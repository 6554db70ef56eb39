"""Write the numbered notebooks of this folder (without outputs) from the cell lists below.

Run `python notebooks/make_notebooks.py` after editing; the notebooks are thin: they call
`cism_lib`, and the library writes every figure (figures/) and table (results/).
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

PARAMS = '''# Parameters: papermill may override any of these.
PROFILE = None   # smoke | cpu | paper; None: the CISM_PROFILE environment variable (default cpu)'''

SETUP = '''from cism_lib import experiments, pipeline, viz

PROFILE = PROFILE or experiments.current_profile()
PROFILE'''


def md(text: str) -> nbformat.NotebookNode:
    """A markdown cell."""
    return new_markdown_cell(text.strip())


def code(src: str, tags: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    """A code cell without outputs."""
    cell = new_code_cell(src.strip())
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def params(extra: str = "") -> nbformat.NotebookNode:
    """The papermill parameters cell (always the first code cell)."""
    return code(PARAMS + ("\n" + extra.strip() if extra.strip() else ""), tags=("parameters",))


def table_notebook(table: str, csv: str, title: str, intro: str, reading: str) -> list:
    """Cells of an ablation-table notebook (Tables 4-8)."""
    return [
        md(f"# {title}\n\n{intro}\n\nEach row is a set of config overrides "
           f"(`experiments.TABLES['{table}']`); finished runs are reused by config hash, so running "
           "this notebook twice is fast. The profile's plan (`experiments.PLANS`) says which rows "
           "and how many seeds it runs; rows it does not run show NaN, never the paper's value."),
        params("SEEDS = None     # None: the profile's plan; e.g. [0, 1, 2] for three seeds of every row"),
        code(SETUP),
        md("## The configurations\n\nThe overrides of each row, applied to the profile's config:"),
        code(f"[(row.label, dict(row.overrides)) for row in experiments.TABLES['{table}']]"),
        md("## Run (or reuse) every planned row × seed\n\nOne line per run: its folder, the data it "
           "ran on, how the CAMs were scored and the metrics (fractions)."),
        code(f"runs = experiments.run_rows('{table}', PROFILE, seeds=SEEDS)\n"
             f"experiments.write_table(runs, '{csv}_runs', PROFILE)\nruns"),
        md("## Ours beside the paper's\n\nPercentages; `ours … std` is the sample standard deviation "
           "over seeds (NaN with one seed). The paper ran on the real iSAID with a ResNet-50 for 20 "
           "epochs; the `data` and `protocol` columns say what ours ran on."),
        code(f"table = experiments.compare('{table}', runs)\n"
             f"experiments.write_table(table, '{csv}', PROFILE)\nexperiments.styled(table)"),
        code(f"fig = viz.comparison_bars(table)\nviz.save_figure(fig, '{csv}', PROFILE)\nfig"),
        md(f"## Reading the table\n\n{reading}"),
    ]


NOTEBOOKS: dict[str, list] = {
    "00_quickstart": [
        md("""# CISM in pictures

Weakly supervised semantic segmentation learns pixel masks from **image-level labels** only
("this tile contains a plane and a storage tank"). A classifier's *class activation maps* (CAMs)
say where it looked; thresholded and refined by a dense CRF they become **pseudo-masks** that
train an ordinary segmentation network.

CISM (Cross-Image Semantic Mining) trains the classifier on **pairs of images that share a
class**: prototype vectors of confident regions (PV), their interactive enhancement across the
pair (PIE), a single-label secondary classification (SLSC) and two cross-image losses push the
CAMs to cover whole objects. This notebook trains the CIAN baseline and CISM on a few hundred
SynthAerial tiles and compares their CAMs on held-out images."""),
        params("N_IMAGES = 4     # images shown"),
        code(SETUP),
        md("## Two classifiers\n\nThe baseline (CIAN: cross-image affinity, multi-label loss only) "
           "and the full CISM, as rows of the Table 1 experiment; `run_configs` trains each (or "
           "reuses a finished run), makes CAMs and scores them."),
        code("runs = experiments.figure_runs('figure7', PROFILE)\nfolders = experiments.run_configs(runs)\n"
             "folders"),
        md("CAM quality (mIoU and overall accuracy of the thresholded CAMs; the background threshold "
           "of each split is chosen on the other split):"),
        code("experiments.metrics_frame(folders)"),
        md("## CAMs and a pseudo-mask\n\nRows: the validation images with the most categories. "
           "Columns: the image, its ground truth, each model's CAM (max over the image's classes) "
           "and the CRF pseudo-mask made from CISM's CAM."),
        code("samples = experiments.cam_examples(runs, split='val', n=N_IMAGES)\n"
             "fig = viz.cam_panel(samples)\nviz.save_figure(fig, 'quickstart_cams', PROFILE)\nfig"),
        md("Next: `01_data_statistics` (why multi-category scenes are hard), `02_mcsg` (the mosaic "
           "augmentation), `03_train` (one training run with live curves) and the tables 04–09."),
    ],
    "01_data_statistics": [
        md("""# Figure 5: how many categories does an image hold?

The paper's Figure 5 motivates CISM: in PASCAL VOC 64% of the images hold a single category,
in aerial datasets fewer than 30%; on iSAID 63% hold 2–3 categories. Cross-image mining helps
most when images share *some* but not all classes. We measure the same histogram on SynthAerial
(whose generator draws the category count from a distribution close to iSAID's) and, when the
environment variable `CISM_ISAID_ROOT` points at iSAID patches, on the real tiles."""),
        params("MAX_BIN = 5      # the last histogram bar counts MAX_BIN or more categories"),
        code(SETUP),
        md("## Image-level labels\n\nLabels come from the masks (a class is present with at least "
           "`data.min_pixels` pixels) and are cached beside the data."),
        code("labels = experiments.figure5_labels(PROFILE)\n{name: lab.shape for name, lab in labels.items()}"),
        md("## Category counts and per-class image counts\n\nWritten to `results/` as CSV."),
        code("stats = experiments.statistics_tables(labels, MAX_BIN)\n"
             "experiments.write_table(stats['categories'], 'figure5_categories', PROFILE)\n"
             "experiments.write_table(stats['classes'], 'class_image_counts', PROFILE)\nstats['categories']"),
        code("stats['classes']"),
        md("## Figure 5\n\nLeft: our histograms. Right: the ranges the paper's text states for iSAID "
           "and VOC (`cism_lib.data.stats.PAPER_FIGURE5`: its plot is not transcribed, only the "
           "numbers its text gives) beside ours."),
        code("fig = viz.figure5(labels, max_bin=MAX_BIN)\nviz.save_figure(fig, 'figure5', PROFILE)\nfig"),
        code("fig = viz.class_counts_figure(stats['classes'])\nviz.save_figure(fig, 'class_image_counts', PROFILE)\nfig"),
    ],
    "02_mcsg": [
        md("""# Figure 6: Multi-Category Sample Generation (MCSG)

Aerial datasets hold many low-category images (1–3 classes) whose pairs share little context.
MCSG (section 3.3) stitches four low-category images into one 2×2 mosaic with random scale,
crop and order, so the classifier sees more multi-category scenes. The mosaic's label is the
union of the tiles' labels restricted to the classes that survive the cropping. In training a
low-category query is replaced by a mosaic with a probability that gives about one mosaic per
batch, as the paper describes."""),
        params("N_MOSAICS = 4    # mosaics shown\nN_QUERIES = 2000  # training queries drawn for the distribution"),
        code(SETUP + "\ncfg = experiments.experiment_config(PROFILE)"),
        md("## Mosaics\n\nTop: the stitched image; bottom: its mask over it."),
        code("mosaics = experiments.mcsg_examples(cfg, N_MOSAICS)"),
        md("## Categories per training query, before and with MCSG\n\nQueries drawn as the pair "
           "sampler draws them; with MCSG the mosaics are really stitched and labelled from the "
           "stitched mask."),
        code("before, after = experiments.mcsg_distribution(cfg, N_QUERIES)\n"
             "shift = experiments.statistics_tables({'before MCSG': before, 'with MCSG': after})['categories']\n"
             "experiments.write_table(shift, 'figure6_categories', PROFILE)\nshift"),
        code("fig = viz.figure6_mosaics(mosaics, before=before, after=after)\n"
             "viz.save_figure(fig, 'figure6_mcsg', PROFILE)\nfig"),
    ],
    "03_train": [
        md("""# Training one classifier

The classifier is trained on query/reference pairs that share a class (`PairDataset`), with the
multi-label loss L_ml and CISM's auxiliary losses (L_sl, L_csm, L_nsc; Eq. 18–27), Adam and a
poly learning rate. A GPU is used when there is one. The curves below redraw after each epoch;
the checkpoint and a JSON-lines log go to the run folder, and a finished run is reused."""),
        params("METHOD = 'cism'  # cam | cian | cism\nEPOCHS = None     # None: the profile's"),
        code(SETUP),
        code("overrides = {'model.method': METHOD, **({'train.epochs': EPOCHS} if EPOCHS else {})}\n"
             "cfg = experiments.prefer_gpu(experiments.experiment_config(PROFILE, **overrides))\n"
             "pipeline.run_dir(cfg)"),
        md("## Train with live curves"),
        code("rd = experiments.train_live(cfg)"),
        md("## The training log\n\nOne line per epoch: the mean of each loss term, the learning rate "
           "and the throughput."),
        code("history = experiments.read_history(rd)\nhistory"),
        code("fig = viz.training_curves(history)\nviz.save_figure(fig, f'training_curves_{cfg.model.method}', PROFILE)\nfig"),
        md("## CAMs and their quality\n\nThe remaining CAM stages: multi-scale CAMs for both splits "
           "and their mIoU with the background threshold chosen on the other split."),
        code("rd = pipeline.run_all(cfg, stages=experiments.CAM_STAGES)\nexperiments.metrics_frame({cfg.model.method: rd})"),
    ],
    "04_table4_prototypes_pie": table_notebook(
        "table4", "table4_pv_pie", "Table 4: prototype vectors (PV) and PIE",
        "Prototype vectors average the features of each class's *confident* CAM region (Eq. 1–5, with a "
        "dropout gate of rate η); PIE lets the query's and reference's prototypes enhance each other "
        "(Eq. 6–9). The paper adds them one after the other to the CIAN baseline.",
        "In our model the prototypes only act through the heads that use them, so `+PV` is CISM "
        "without PIE and SLSC (the prototypes feed the CSM/NSC heads) and `+PV+PIE` is CISM without "
        "SLSC. The paper reports +0.7 mIoU for PV (with lower OA) and +3.8 more with PIE."),
    "05_table5_eta": table_notebook(
        "table5", "table5_eta", "Table 5: the gate-map dropout rate η",
        "η is the rate at which the gate map (Eq. 5) drops positions of the confident region before the "
        "prototypes are pooled. The paper finds η = 0.3 best.",
        "The paper's curve rises from η = 0.1 to 0.3 and falls after; on small synthetic data the "
        "differences between rows can be within the seed spread (compare with the std column)."),
    "06_table6_slsc": table_notebook(
        "table6", "table6_slsc", "Table 6: single-label secondary classification (SLSC)",
        "SLSC (Eq. 14–17) re-scores each class from its own CAM region, so classes that share "
        "background context are told apart. The paper adds it to CIAN, to an RPNet-like model "
        "(prototypes without PIE and without the cross-image losses) and to CISM.",
        "The paper reports a gain from SLSC in all three models (+3.8, +2.3 and +1.3 mIoU). Our "
        "RPNet-like row without SLSC has no head that uses the prototypes, so it trains like CIAN."),
    "07_table7_mcsg": table_notebook(
        "table7", "table7_mcsg", "Table 7: Multi-Category Sample Generation (MCSG)",
        "MCSG replaces some low-category queries by 2×2 mosaics of four low-category images "
        "(`02_mcsg`). The paper applies it to CIAN and to CISM.",
        "The paper reports +1.4 mIoU on CIAN and +1.9 on CISM. SynthAerial has fewer "
        "single-category images than iSAID, which leaves MCSG less to fix."),
    "08_table8_losses": table_notebook(
        "table8", "table8_losses", "Table 8: the loss terms",
        "The total loss (Eq. 18) adds to the multi-label loss L_ml the single-label loss L_sl, the "
        "common-semantic-mining loss L_csm and the non-common semantic contrastive loss L_nsc. All rows "
        "train CISM with MCSG (the paper's full row, 34.1, is its CISM + MCSG); a row without L_sl "
        "switches SLSC off.",
        "In the paper L_nsc alone hurts (−6.4 mIoU) while L_csm helps (+3.1); both together give the "
        "best CAMs."),
    "09_table1_comparison": [
        md("""# Tables 1–2: CAM, CIAN and CISM through the whole chain

Per-class IoU of the CAMs (Table 1), then the CRF pseudo-masks and a DeepLab trained on them
(Table 2's image-level rows). On SynthAerial always; on the real iSAID tiles too when
`CISM_ISAID_ROOT` is set (with the `isaid512` preset and the profile's real-data budget)."""),
        params("SEEDS = None     # None: the profile's plan"),
        code(SETUP),
        md("## Run the whole chain for each model\n\nTrain → CAMs → CAM scores → pseudo-masks → "
           "DeepLab; finished stages are reused."),
        code("runs = experiments.run_rows('table1', PROFILE, seeds=SEEDS, stages=pipeline.STAGES)\n"
             "runs = experiments.per_class_iou(runs, 'cam_train')\n"
             "experiments.write_table(runs, 'table1_runs', PROFILE)\nruns"),
        md("## Table 1: per-class IoU (%)\n\nThe paper's line and ours for each model; class "
           "abbreviations as in the paper (BG background, PL plane, …)."),
        code("table1 = experiments.compare('table1', runs)\nexperiments.write_table(table1, 'table1_per_class', PROFILE)\n"
             "experiments.styled(table1)"),
        md("## Table 2 analogue: pseudo-masks and DeepLab (%)\n\nThe paper lists DeepLab mIoU on iSAID "
           "val; ours adds the pseudo-mask mIoU on the training split (threshold selected on val, "
           "dense CRF)."),
        code("table2 = experiments.compare('table2', runs)\nexperiments.write_table(table2, 'table2_supervision', PROFILE)\n"
             "experiments.styled(table2)"),
        md("## The real iSAID tiles\n\nSkipped unless `CISM_ISAID_ROOT` is set."),
        code("real_root = experiments.isaid_root()\nreal_root"),
        code("if real_root is not None:\n"
             "    real = experiments.run_rows('table1', PROFILE, seeds=[0], stages=pipeline.STAGES,\n"
             "                                base=experiments.experiment_config(PROFILE, real=True))\n"
             "    real = experiments.per_class_iou(real, 'cam_train')\n"
             "    experiments.write_table(experiments.compare('table1', real), 'table1_per_class_isaid', PROFILE)\n"
             "    experiments.write_table(experiments.compare('table2', real), 'table2_supervision_isaid', PROFILE)\n"
             "    display(experiments.styled(experiments.compare('table1', real)))"),
    ],
    "10_cam_figures": [
        md("""# Figures 7–9: CAMs side by side

Figure 7 compares the baseline with CISM, Figure 8 the steps of Table 4 (baseline, +PV,
+PV+PIE), Figure 9 the SLSC comparison of Table 6 (baseline, RPNet-like, CISM, CISM + SLSC).
Each row: image, ground truth, the CAM of each model and the CRF pseudo-mask of the last one.
Only rows the profile's plan runs are shown (the smoke profile shows fewer columns)."""),
        params("N_IMAGES = 4     # images per figure"),
        code(SETUP),
        md("## Figure 7: baseline vs CISM"),
        code("runs = experiments.figure_runs('figure7', PROFILE)\nfolders = experiments.run_configs(runs)\n"
             "fig = viz.cam_panel(experiments.cam_examples(runs, 'val', N_IMAGES))\n"
             "viz.save_figure(fig, 'figure7_cams', PROFILE)\nfig"),
        md("## Figure 8: prototype vectors and PIE"),
        code("runs = experiments.figure_runs('figure8', PROFILE)\nfolders = experiments.run_configs(runs)\n"
             "fig = viz.cam_panel(experiments.cam_examples(runs, 'val', N_IMAGES))\n"
             "viz.save_figure(fig, 'figure8_cams', PROFILE)\nfig"),
        md("## Figure 9: SLSC"),
        code("runs = experiments.figure_runs('figure9', PROFILE)\nfolders = experiments.run_configs(runs)\n"
             "fig = viz.cam_panel(experiments.cam_examples(runs, 'val', N_IMAGES))\n"
             "viz.save_figure(fig, 'figure9_cams', PROFILE)\nfig"),
    ],
    "11_explore": [
        md("""# Explore: CAM → threshold → CRF, live

Pick a validation image, a class, the background threshold and the dense-CRF parameters; the
CAM of that class, the thresholded label map, the CRF-refined mask and their IoU against the
ground truth update as you move the sliders. Uses the full CISM run of the profile (trained if
needed). Headless (papermill, nbval) the view is drawn once with the defaults."""),
        params("SPLIT = 'val'\nINTERACTIVE = None  # None: sliders, unless run headless (CISM_HEADLESS=1: make reproduce, make test)"),
        code(SETUP + "\nimport ipywidgets as widgets\nfrom cism_lib.classes import ISAID\nfrom cism_lib.config import CrfConfig"),
        code("cfg = experiments.figure_runs('figure7', PROFILE)['CISM +SLSC']\nrd = pipeline.run_all(cfg, stages=experiments.CAM_STAGES)\n"
             "threshold = pipeline.read_metrics(rd)[f'cam_threshold_{SPLIT}']\nthreshold"),
        md("The view: one library call computes the masks and IoUs, one draws them."),
        code("""def view(index=0, class_name='plane', threshold=threshold, bi_sxy=80.0, bi_srgb=13.0,
         bi_compat=10.0, iterations=5):
    crf = CrfConfig(bi_sxy=bi_sxy, bi_srgb=bi_srgb, bi_compat=bi_compat, iterations=iterations)
    result = experiments.explore(cfg, SPLIT, index, ISAID.names.index(class_name), threshold, crf)
    display(viz.explore_panel(result))
    print(f"{result['id']}: classes present {result['present']}")"""),
        md("The sliders (`bi_sxy` is in pixels of a 500-pixel image and scaled to this one, like every "
           "CRF width in the library). Headless runs draw the view once instead: ipywidgets' "
           "`interact` made papermill wait forever on an idle kernel there."),
        code("""n_images = len(pipeline.open_split(cfg, SPLIT))
if experiments.interactive(INTERACTIVE):
    widgets.interact(view, index=widgets.IntSlider(0, 0, n_images - 1),
                     class_name=widgets.Dropdown(options=list(ISAID.names[1:]), value='plane'),
                     threshold=widgets.FloatSlider(value=threshold, min=0.0, max=1.0, step=0.05),
                     bi_sxy=widgets.FloatSlider(value=80.0, min=5.0, max=150.0, step=5.0),
                     bi_srgb=widgets.FloatSlider(value=13.0, min=1.0, max=50.0, step=1.0),
                     bi_compat=widgets.FloatSlider(value=10.0, min=0.0, max=20.0, step=1.0),
                     iterations=widgets.IntSlider(5, 1, 20))
else:
    view()"""),
    ],
}


def build(name: str, cells: list) -> nbformat.NotebookNode:
    """A notebook with a Python 3 kernel spec and the given cells."""
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main() -> None:
    """Write every notebook (stable cell ids, so regenerating gives the same bytes)."""
    for name, cells in NOTEBOOKS.items():
        for i, cell in enumerate(cells):
            cell["id"] = f"{name[:2]}-{i:02d}"
        nb = build(name, cells)
        nbformat.validate(nb)
        nbformat.write(nb, HERE / f"{name}.ipynb")
        print(f"wrote {name}.ipynb ({len(cells)} cells)")


if __name__ == "__main__":
    main()

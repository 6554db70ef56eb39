"""`cism`: the command line. Every config field is a flag (`--model.eta 0.1`), built from config.py."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cism_lib.config import CAM_SOURCES, RunConfig, load_config
from cism_lib.flags import add_dataclass_flags

EPILOG = """examples:
  cism data synth --out data/synth --train 600 --val 200 --size 256 --seed 0
  cism data stats data/synth --split train
  cism run configs/smoke.yaml
  cism train configs/cpu.yaml --model.method cian --train.epochs 2
  cism eval-cams configs/cpu.yaml
  cism chain runs/cam-5aef32321c --crf.unary label --seg.epochs 8 --seg.curve_images 200
  CISM_ISAID_ROOT=/data/isaid512 cism screen --rows CAM CISM --seeds 0 1
"""


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One `--section.field` flag per RunConfig field (value parsed by the config's coercion)."""
    add_dataclass_flags(parser, RunConfig, dest="cfg:")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Load the YAML preset named on the command line and apply the flags given."""
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:") and v is not None}
    return load_config(getattr(args, "config", None), overrides)


def _cmd_synth(args: argparse.Namespace) -> None:
    from cism_lib.data.synthetic import generate

    out = generate(args.out, args.train, args.val, args.size, args.seed, workers=args.workers)
    print(f"SynthAerial written to {out}")


def _cmd_stats(args: argparse.Namespace) -> None:
    from cism_lib.data.isaid import SegFolder
    from cism_lib.data.stats import dataset_stats, format_stats

    ds = SegFolder(args.dir, args.split, layout=args.layout, min_pixels=args.min_pixels,
                   skip_bad=args.skip_bad)
    title = f"{args.dir} [{args.split}]: {len(ds)} images"
    print(format_stats(dataset_stats(ds), title=title, labels=ds.labels, paper="isaid"))
    if args.pairs:
        import pandas as pd

        from cism_lib.config import PAIR_SAMPLING
        from cism_lib.data.pairs import shared_class_chance
        from cism_lib.display import markdown_table

        table = pd.DataFrame({"class": ds.classes.names[1:], "images": ds.labels.sum(axis=0),
                              **{f"P(common), {s}": shared_class_chance(ds.labels, s).round(2) for s in PAIR_SAMPLING}})
        print("\nThe chance that a query's reference also holds its class k, for the queries that hold k "
              "(data.pair_sampling; exact, from the image-level labels):")
        print(markdown_table(table))


def _cmd_split(args: argparse.Namespace) -> None:
    from cism_lib.data.isaid import split_isaid

    split_isaid(args.src, args.dst, args.split, patch=args.patch, overlap=args.overlap)


def _cmd_stage(args: argparse.Namespace) -> None:
    from cism_lib import pipeline

    cfg = config_from_args(args)
    stages = pipeline.STAGES if args.command == "run" else (args.command.replace("eval-cams", "eval"),)
    rd = pipeline.run_all(cfg, stages=stages, force=args.force, resume=not args.no_resume)
    print(f"run folder: {rd}")
    _print_metrics(rd)


def _print_metrics(folder: Path) -> None:
    """The numbers of a run or chain folder's metrics.json, one per line."""
    from cism_lib import pipeline

    for k, v in pipeline.scalar_metrics(folder).items():
        print(f"  {k}: {v:.4f}")


def _cmd_chain(args: argparse.Namespace) -> None:
    from cism_lib import pipeline

    if args.summary:
        from cism_lib.display import markdown_table

        table = pipeline.chain_summary(args.run, per_class=args.per_class)
        if len(table):
            table["threshold"] = table["threshold"].map(lambda t: f"{t:g}")
        print(markdown_table(table.round(1)) if len(table) else "no chains in these runs yet")
        return
    if len(args.run) != 1:
        raise SystemExit("cism chain: give one run folder (several only with --summary)")
    args.run = args.run[0]
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:") and v is not None}
    cfg = pipeline.chain_config(args.run, **overrides)
    cd = pipeline.run_chain(cfg, args.run, stages=args.stages, force=args.force)
    print(f"chain folder: {cd}")
    _print_metrics(cd)


def _cmd_chain_figure(args: argparse.Namespace) -> None:
    from cism_lib import experiments as ex
    from cism_lib import viz
    from cism_lib.config import load_config
    from cism_lib.errors import ConfigError
    from cism_lib.runfolder import RunFolder

    chains = {}
    for item in args.chains:
        name, sep, folder = item.partition("=")
        chain = RunFolder(folder)
        if not sep or not chain.is_chain:
            raise ConfigError(f"{item}: give NAME=<run>/chain/<hash> (a chain folder)")
        chains[name] = (load_config(chain.run_of_chain.config), chain.root)
    fig = viz.cam_panel(ex.chain_examples(chains, args.split, args.images))
    print(f"written: {viz.save_figure(fig, args.name, args.profile)}")


def _cmd_curve(args: argparse.Namespace) -> None:
    import pandas as pd

    from cism_lib import pipeline
    from cism_lib.config import load_config
    from cism_lib.display import markdown_table
    from cism_lib.errors import ConfigError, DataError, FolderBusyError
    from cism_lib.experiments import merge_lines
    from cism_lib.runfolder import RunFolder
    from cism_lib.runtime import folder_lock

    if not args.run and not (args.csv and args.figure):
        raise ConfigError("cism curve: name run folders, or give --csv FILE --figure NAME to draw FILE's lines")
    lines = []
    for rd in args.run:
        cfg = load_config(RunFolder(rd).config)
        try:
            with folder_lock(rd, wait=False):
                table = pipeline.score_curve(cfg, rd, progress=not args.quiet)
        except FolderBusyError as exc:  # still training: it scores its own snapshots
            print(f"{exc}; the epochs scored so far:")
            table = pipeline.score_curve(cfg, rd, score=())
        print(f"{rd} ({pipeline.curve_label(cfg)}, seed {cfg.train.seed}, {cfg.train.epochs} epochs)")
        print(markdown_table(table.round(4)) if len(table) else "  no snapshot yet (train.curve_epochs)")
        if len(table):
            lines.append(pipeline.curve_lines(cfg, rd, table))
    if args.csv and lines:
        merge_lines(pd.concat(lines, ignore_index=True), args.csv, key=("run", "epoch"))
        print(f"written: {args.csv}")
    if not args.figure:
        return
    if args.csv and not args.csv.is_file():
        raise DataError(f"{args.csv}: no such file; name the runs whose curve lines it should hold")
    # with --csv the figure draws every line of the file (what is committed), else the runs named
    shown = pd.read_csv(args.csv) if args.csv else pd.concat(lines, ignore_index=True) if lines else None
    if shown is not None:
        from cism_lib import viz
        from cism_lib.report import learning_curve_figure

        print(f"written: {viz.save_figure(learning_curve_figure(shown), args.figure, args.profile)}")


def _cmd_rescore(args: argparse.Namespace) -> None:
    from cism_lib import pipeline
    from cism_lib.config import load_config
    from cism_lib.display import markdown_table
    from cism_lib.errors import DataError
    from cism_lib.runfolder import RunFolder, stage_done
    from cism_lib.runtime import folder_lock

    lines = []
    for rd in args.run:
        if not stage_done(rd, "train"):
            raise DataError(f"{rd}: not a trained run (no finished train stage); rescoring needs its final weights")
        cfg = load_config(RunFolder(rd).config)
        with folder_lock(rd, wait=False):
            summary = pipeline.score_cam_sources(cfg, rd, args.sources, progress=not args.quiet,
                                                 scales=args.scales, keep_cams=False)
        table = pipeline.rescore_lines(cfg, rd, summary, args.sources, args.scales)
        print(f"{rd} ({pipeline.curve_label(cfg)}, seed {cfg.train.seed}, {cfg.train.epochs} epochs)")
        print(markdown_table(table[["source", "scales", "cam_miou_val", "cam_miou_train", "cam_threshold_val"]]
                             .round(4)))
        lines.append(table)
    if args.csv and lines:
        import pandas as pd

        from cism_lib.experiments import merge_lines

        merge_lines(pd.concat(lines, ignore_index=True), args.csv, key=("run", "source", "scales"))
        print(f"written: {args.csv}")


def _cmd_runs(args: argparse.Namespace) -> None:
    from cism_lib.errors import DataError
    from cism_lib.pipeline import collect_runs

    if not args.dir.is_dir():
        raise DataError(f"{args.dir}: no such runs folder (runs go to the config's out_dir)")
    table = collect_runs(args.dir)
    print(table.to_string() if len(table) else f"no runs in {args.dir} yet")


def _cmd_screen(args: argparse.Namespace) -> None:
    from cism_lib import experiments as ex

    if args.merge:
        import pandas as pd

        from cism_lib.errors import DataError

        path = ex.output_dir("results", "isaid512") / "screen_runs.csv"
        for other in args.merge:
            if not other.is_file():
                raise DataError(f"{other}: no such screen CSV (a checkout's results/isaid512/screen_runs.csv)")
            lines = pd.read_csv(other)
            if "run" not in lines:
                raise DataError(f"{other}: not a screen CSV (no 'run' column)")
            ex.merge_lines(lines, path, key=("run",))
            print(f"{other}: {len(lines)} lines merged into {path}")
        return
    if args.summary:
        import pandas as pd

        from cism_lib.display import markdown_table

        path = ex.output_dir("results", "isaid512") / "screen_runs.csv"
        if not path.is_file():
            raise SystemExit(f"{path}: no screen runs yet (run cism screen first)")
        runs = pd.read_csv(path)
        runs = runs[runs["row"].isin(args.rows)] if args.rows else runs
        if args.per_class:
            runs = ex.with_screen_budget(runs)
            runs = runs[runs["seed"].isin(args.seeds)] if args.seeds else runs
            print(markdown_table(ex.screen_per_class(runs[runs["tiles"] == args.tiles] if args.tiles else runs)))
        else:
            print(markdown_table(ex.screen_summary(runs)))
        return
    overrides = {"data.max_train": args.tiles or 600, "train.epochs": args.epochs,
                 **{k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:") and v is not None}}
    if args.cam_tiles:
        overrides["cam.max_train"] = args.cam_tiles
    sources = None if args.cam_sources is None else (args.cam_sources or ("slsc", "product"))
    df = ex.run_screen(args.rows, args.seeds or [0, 1], cam_sources=sources, **overrides)
    cols = ["row", "seed", "cam_miou_val", "cam_miou_train", "cam_threshold_val", "run"]
    cols += [c for c in df.columns if c.startswith("cam_miou_val_")]
    print(df[[c for c in cols if c in df]].to_string(index=False))
    print(f"written to {ex.output_dir('results', 'isaid512') / 'screen_runs.csv'}")


def build_parser() -> argparse.ArgumentParser:
    """The `cism` argument parser with its sub-commands."""
    ap = argparse.ArgumentParser(prog="cism", description="Cross-Image Semantic Mining (CISM) for "
                                 "weakly supervised semantic segmentation of aerial imagery.",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="generate, split and inspect datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("synth", help="write SynthAerial in the iSAID patch layout")
    s.add_argument("--out", required=True, type=Path, help="output folder")
    s.add_argument("--train", type=int, default=600, help="training images")
    s.add_argument("--val", type=int, default=200, help="validation images")
    s.add_argument("--size", type=int, default=256, help="image side in pixels")
    s.add_argument("--seed", type=int, default=0, help="same seed, identical bytes")
    s.add_argument("--workers", type=int, default=1, help="processes")
    s.set_defaults(func=_cmd_synth)
    st = dsub.add_parser("stats", help="category-count histogram (Figure 5) and per-class counts")
    st.add_argument("dir", type=Path, help="an iSAID patch folder (devkit or mmseg layout)")
    st.add_argument("--split", default="train")
    st.add_argument("--layout", default="auto", choices=["auto", "devkit", "mmseg"])
    st.add_argument("--min-pixels", type=int, default=1, help="pixels for a class to count as present")
    st.add_argument("--skip-bad", action="store_true", help="skip unreadable samples and list them")
    st.add_argument("--pairs", action="store_true",
                    help="also the chance, per class, that a training pair has it in common under each "
                    "data.pair_sampling (uniform over images sharing a class, or class first)")
    st.set_defaults(func=_cmd_stats)
    sp = dsub.add_parser("split-isaid", help="cut the full-size official iSAID release into patches")
    sp.add_argument("src", type=Path, help="official release root (<split>/images, <split>/Semantic_masks)")
    sp.add_argument("dst", type=Path, help="output patch folder")
    sp.add_argument("--split", default="train")
    sp.add_argument("--patch", type=int, default=512)
    sp.add_argument("--overlap", type=int, default=128)
    sp.set_defaults(func=_cmd_split)
    helps = {"train": "train the classifier on image pairs", "cams": "multi-scale CAMs for train and val",
             "eval-cams": "CAM mIoU/OA (threshold chosen on the other split)",
             "pseudo": "dense-CRF pseudo-masks", "segment": "train and evaluate DeepLab on pseudo-masks",
             "run": "the whole chain; finished stages are skipped"}
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("config", nargs="?", default=None, help="YAML preset (configs/*.yaml)")
        p.add_argument("--force", action="store_true", help="redo the stage even if done")
        p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
        add_config_flags(p)
        p.set_defaults(func=_cmd_stage)
    ch = sub.add_parser("chain", help="pseudo-masks and DeepLab of a trained run, in <run>/chain/<hash>",
                        description="CAMs of the train images a chain covers (--cam.max_train; default all), "
                        "CRF pseudo-masks (threshold chosen by the run's eval on its train CAMs) and DeepLab "
                        "on them, scored on the whole val split; only --cam.max_train, --crf.* and --seg.* "
                        "(and --device, --threads) may change. Finished stages are skipped.")
    ch.add_argument("run", type=Path, nargs="+", help="a run folder whose train and eval stages are done "
                    "(with --summary: one or more)")
    ch.add_argument("--summary", action="store_true",
                    help="print every chain of the given runs as Markdown (settings, pseudo-mask and DeepLab "
                    "scores, learning curve) and run nothing")
    ch.add_argument("--per-class", action="store_true", help="with --summary: DeepLab's per-class val IoU too")
    ch.add_argument("--stages", nargs="+", default=list(("cams", "pseudo", "segment")),
                    choices=("cams", "pseudo", "segment"), help="(default: all three)")
    ch.add_argument("--force", action="store_true", help="redo the stages even if done")
    add_config_flags(ch)
    ch.set_defaults(func=_cmd_chain)
    cf = sub.add_parser("chain-figure", help="image, ground truth, and per model its CAM, pseudo-mask and DeepLab",
                        description="The real-tile figure of chains (experiments.chain_examples): for each "
                        "image, each model's CAM of the image's largest class, its pseudo-mask (train split "
                        "only) and its DeepLab prediction, each titled with its IoU / mIoU on the image.")
    cf.add_argument("chains", nargs="+", metavar="NAME=CHAIN", help="a model name and its <run>/chain/<hash> folder")
    cf.add_argument("--split", default="val")
    cf.add_argument("--images", type=int, default=4)
    cf.add_argument("--name", default="chain_val", help="figure file name, without extension")
    cf.add_argument("--profile", default="isaid512", help="figures/<profile>/ (cpu: figures/)")
    cf.set_defaults(func=_cmd_chain_figure)
    sc = sub.add_parser("screen", help="the CISM readings on the real tiles (CISM_ISAID_ROOT), screening budget",
                        description="Train, CAM and score each reading of experiments.SCREEN on the first "
                        "--tiles real training tiles; val mIoU with the threshold chosen on those tiles.")
    sc.add_argument("--rows", nargs="+", default=None, help="row labels (default: every row, in order)")
    sc.add_argument("--seeds", nargs="+", type=int, default=None, help="(default: 0 1)")
    sc.add_argument("--tiles", type=int, default=None, help="training tiles (data.max_train; default: 600)")
    sc.add_argument("--epochs", type=int, default=1)
    sc.add_argument("--cam-tiles", type=int, default=None,
                    help="CAMs of only the first N training tiles, where the threshold is chosen (cam.max_train; "
                    "default: all --tiles); val is always scored whole")
    sc.add_argument("--cam-sources", nargs="*", default=None, choices=("slsc", "product"), metavar="SOURCE",
                    help="also score CAMs from the SLSC scorer ('slsc') and/or from its product with W_c "
                    "('product'); the flag alone scores both (hypothesis 1)")
    sc.add_argument("--per-class", action="store_true",
                    help="with --summary: one line per run (of --rows, --seeds, --tiles where given) with "
                         "its per-class val IoU and epoch-mean L_ml, read from its run folder")
    sc.add_argument("--summary", action="store_true",
                    help="print the per-row summary (mean ± std over seeds) of results/isaid512/screen_runs.csv "
                    "as Markdown and run nothing")
    sc.add_argument("--merge", nargs="+", type=Path, default=None, metavar="CSV",
                    help="merge the lines of other checkouts' screen_runs.csv (clones that ran screens) into "
                    "this one's, each replacing the line of the same run, and run nothing")
    add_config_flags(sc)
    sc.set_defaults(func=_cmd_screen)
    cu = sub.add_parser("curve", help="the learning curve of runs trained with train.curve_epochs",
                        description="Scores every kept epoch snapshot (train/epoch_<N>.pt) not scored yet: "
                        "CAMs of both splits, each scored with the threshold chosen on the other, into "
                        "<run>/curve/epoch_<N>/; prints mIoU, OA, threshold and the epoch's mean losses.")
    cu.add_argument("run", type=Path, nargs="*", help="run folders (none: with --csv and --figure, draw FILE's lines)")
    cu.add_argument("--quiet", action="store_true", help="no progress bars")
    cu.add_argument("--figure", default=None, metavar="NAME",
                    help="also draw the curves (val mIoU against epoch, one line per method, seeds as a band, "
                    "the paper's Table 1 figures as marks) to figures/<profile>/NAME.png")
    cu.add_argument("--profile", default="isaid512", help="figures/<profile>/ (cpu: figures/)")
    cu.add_argument("--csv", type=Path, default=None, metavar="FILE",
                    help="also write the curves' lines (run, method, seed, epoch, scores, losses, protocol) to "
                    "FILE, replacing the lines of the same run and epoch (e.g. results/isaid512/curve_runs.csv); "
                    "--figure then draws every line of FILE")
    cu.set_defaults(func=_cmd_curve)
    rs = sub.add_parser("rescore", help="a trained run's CAMs made another way, without retraining",
                        description="CAMs of both splits from the run's final weights with another CAM source "
                        "and/or other test-time scales, each split scored with the threshold chosen on the other "
                        "(the run's protocol otherwise), into <run>/metrics/cam_<variant>_<split>.json.")
    rs.add_argument("run", type=Path, nargs="+", help="trained run folders")
    rs.add_argument("--sources", nargs="+", default=["classifier"], choices=CAM_SOURCES, metavar="SOURCE",
                    help=f"what the CAM is made from, of {', '.join(CAM_SOURCES)}: W_c (the run's own), the "
                    "separate SLSC scorer, their product, or CISM's class-specific weighting M ⊙ S of Eq. 14 "
                    "(default: classifier)")
    rs.add_argument("--scales", nargs="+", type=float, default=None, metavar="S",
                    help="test-time scales instead of the run's own (e.g. 0.5 0.75 1.0); flip as the run's")
    rs.add_argument("--quiet", action="store_true", help="no progress bars")
    rs.add_argument("--csv", type=Path, default=None, metavar="FILE",
                    help="also write one line per run and source (protocol, scores, machine) to FILE, replacing "
                    "the lines of the same run, source and scales (e.g. results/isaid512/rescore_runs.csv)")
    rs.set_defaults(func=_cmd_rescore)
    r = sub.add_parser("runs", help="table of finished runs")
    r.add_argument("dir", nargs="?", default="runs", type=Path)
    r.set_defaults(func=_cmd_runs)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cism` console script."""
    from cism_lib.errors import CismError
    from cism_lib.runtime import stop_on_signals

    args = build_parser().parse_args(argv)
    stop_on_signals()
    try:
        args.func(args)
    except CismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:  # not about a path the user gave: keep the traceback
            raise
        print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The run folder: its identity (which config values make another run) and its layout."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cism_lib import experiments as ex
from cism_lib import runtime
from cism_lib.config import RunConfig, replace
from cism_lib.outputs import ROOT
from cism_lib.pipeline import chain_dir, run_dir

RUN_RECORDS = sorted((ROOT / "results").glob("*_runs.csv")) + sorted((ROOT / "results" / "smoke").glob("*_runs.csv"))


@pytest.mark.parametrize("path", RUN_RECORDS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_results_name_the_folders_todays_code_gives_their_rows(path: Path, monkeypatch) -> None:
    """Every run a committed table was made from keeps its folder: the row, seed and precision of
    each results line give today the folder name recorded beside its figures (a finished run
    folder stays reusable; a change of identity would retrain every table)."""
    profile = "smoke" if path.parent.name == "smoke" else "cpu"
    lines = pd.read_csv(path)
    assert len(lines), path
    for _, line in lines.iterrows():
        monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda bf16=line["precision"] == "bf16": bf16)
        row = next(r for r in ex.table_rows(line["table"]) if r.label == line["row"])
        cfg = ex.row_config(row, profile, int(line["seed"]), table=line["table"])
        assert run_dir(cfg).name == line["run"], (path.name, line["row"], int(line["seed"]))


def test_values_that_only_score_or_label_a_run_keep_its_folder(tmp_path) -> None:
    cfg = replace(RunConfig(), **{"out_dir": str(tmp_path), "seg.enabled": True})
    same = {"name": "other", "train.curve_epochs": (1, 2), "seg.curve_images": 7}
    assert run_dir(replace(cfg, **same)) == run_dir(cfg)
    for key, value in (("train.epochs", 3), ("seg.lr", 0.5), ("threads", 1), ("data.crop_size", 128)):
        assert run_dir(replace(cfg, **{key: value})) != run_dir(cfg), key
    # a seg-enabled run's folder was named with its DeepLab scoring before chains re-scored in place
    assert run_dir(replace(cfg, **{"seg.eval_flip": True})) != run_dir(cfg)


def test_a_chain_is_named_by_its_own_values_only(tmp_path) -> None:
    cfg = replace(RunConfig(), **{"seg.enabled": True})
    rd = tmp_path / "run"
    scoring = {"seg.eval_flip": True, "seg.eval_scales": (1.0, 0.5), "seg.eval_crf": True,
               "seg.curve_images": 5, "crf.workers": 3, "train.epochs": 9, "name": "x"}
    assert chain_dir(replace(cfg, **scoring), rd) == chain_dir(cfg, rd)
    assert chain_dir(cfg, rd).parent == rd / "chain"
    for key, value in (("seg.lr", 0.5), ("crf.iterations", 3), ("cam.max_train", 10)):
        assert chain_dir(replace(cfg, **{key: value}), rd) != chain_dir(cfg, rd), key

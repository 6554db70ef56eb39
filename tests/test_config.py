"""Config dataclasses: round trips, overrides, validation and unknown keys."""
from __future__ import annotations

import pytest

from cism_lib.config import (ModelConfig, RunConfig, config_hash, from_dict, load_config, replace,
                             save_config, to_dict)
from cism_lib.errors import CheckpointError, ConfigError


def test_round_trip_through_yaml(tmp_path):
    cfg = replace(RunConfig(), **{"model.eta": 0.1, "model.losses": ("ml", "sl"), "train.epochs": 2})
    save_config(cfg, tmp_path / "c.yaml")
    back = load_config(tmp_path / "c.yaml")
    assert back == cfg
    assert back.model.losses == ("ml", "sl")
    assert config_hash(back) == config_hash(cfg)


def test_hash_changes_with_any_field():
    a = RunConfig()
    assert config_hash(a) != config_hash(replace(a, **{"model.eta": 0.5}))


def test_unknown_key_names_the_key(tmp_path):
    (tmp_path / "bad.yaml").write_text("model:\n  etaa: 0.3\n")
    with pytest.raises(ConfigError, match="etaa"):
        load_config(tmp_path / "bad.yaml")


def test_cli_strings_are_coerced():
    cfg = replace(RunConfig(), **{"model.use_pie": "false", "cam.scales": "0.5,1.0", "data.max_train": "none"})
    assert cfg.model.use_pie is False
    assert cfg.cam.scales == (0.5, 1.0)
    assert cfg.data.max_train is None


@pytest.mark.parametrize("bad", [{"method": "fcn"}, {"losses": ["sl"]}, {"eta": 1.5}, {"losses": ["ml", "xx"]}])
def test_invalid_model_values_raise(bad):
    with pytest.raises(ConfigError):
        from_dict(ModelConfig, bad)


def test_to_dict_is_plain():
    d = to_dict(RunConfig())
    assert isinstance(d["cam"]["scales"], list) and isinstance(d["model"], dict)


def test_bad_type_is_reported():
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(None, {"train.epochs": "many"})


def test_hash_covers_only_non_default_values():
    from cism_lib.config import non_default

    cfg = replace(RunConfig(), **{"model.eta": 0.5, "train.epochs": 2})
    assert non_default(cfg) == {"model.eta": 0.5, "train.epochs": 2}
    assert non_default(RunConfig()) == {}
    # Setting a field to its default is the same configuration, so the same hash.
    assert config_hash(replace(cfg, **{"seg.lr": RunConfig().seg.lr})) == config_hash(cfg)
    assert config_hash(cfg, exclude=("model",)) == config_hash(replace(RunConfig(), **{"train.epochs": 2}))
    assert config_hash(cfg, exclude=("train.epochs",)) != config_hash(cfg)


def test_run_dir_ignores_labels_and_the_synthetic_cache_folder(tmp_path):
    from cism_lib.runfolder import run_dir

    cfg = replace(RunConfig(), **{"out_dir": str(tmp_path), "data.root": "/somewhere/synth"})
    moved = replace(cfg, **{"name": "other", "data.root": "/elsewhere/synth"})
    assert run_dir(cfg) == run_dir(moved) and run_dir(cfg).parent == tmp_path
    real = replace(cfg, **{"data.dataset": "isaid"})
    assert run_dir(real) != run_dir(replace(real, **{"data.root": "/elsewhere/isaid"}))
    assert run_dir(cfg) != run_dir(replace(cfg, **{"seg.lr": 0.5}))
    no_seg = replace(cfg, **{"seg.enabled": False})
    assert run_dir(no_seg) == run_dir(replace(no_seg, **{"seg.lr": 0.5})) != run_dir(cfg)


def test_run_dir_of_an_isaid_root_from_the_environment(tmp_path, monkeypatch):
    from cism_lib.runfolder import ISAID_ENV, run_dir

    cfg = replace(RunConfig(), **{"out_dir": str(tmp_path), "data.dataset": "isaid"})
    monkeypatch.setenv(ISAID_ENV, "/data/isaid")
    assert run_dir(cfg) == run_dir(replace(cfg, **{"data.root": "/data/isaid"}))
    assert run_dir(cfg) != run_dir(replace(cfg, **{"data.root": "/data/other"}))
    monkeypatch.setenv(ISAID_ENV, "/data/other")
    assert run_dir(cfg) == run_dir(replace(cfg, **{"data.root": "/data/other"}))


def test_run_dir_of_a_real_root_spelled_relative_or_absolute_is_one_run(tmp_path, monkeypatch):
    from cism_lib.runfolder import ISAID_ENV, cpu_bf16_run, run_dir

    (tmp_path / "data" / "isaid").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    cfg = replace(RunConfig(), **{"out_dir": str(tmp_path / "runs"), "data.dataset": "isaid"})
    absolute = replace(cfg, **{"data.root": str(tmp_path / "data" / "isaid")})
    assert run_dir(replace(cfg, **{"data.root": "../data/isaid"})) == run_dir(absolute)
    monkeypatch.setenv(ISAID_ENV, "../data/./isaid")
    assert run_dir(cfg) == run_dir(absolute)
    # an absolute, canonical root hashes as itself: run folders named before this rule stay valid
    loop = replace(absolute, **{"train.fused_optimizer": False})  # the optimiser of that era
    extra = {"runtime.precision": "bf16"} if cpu_bf16_run(loop) else {}
    exclude = ("name", "out_dir", "train.depthwise_grad", "train.fused_optimizer")
    assert run_dir(loop).name == f"cism-{config_hash(loop, exclude=exclude, extra=extra)}"


def test_classifier_checkpoint_model_check(tmp_path):
    import torch

    from cism_lib.engine import load_checkpoint

    cfg = replace(RunConfig(), **{"model.eta": 0.2})
    stored = to_dict(cfg)
    del stored["model"]["pie_norm"]  # a checkpoint written before this option existed
    torch.save({"model": {}, "config": stored}, tmp_path / "old.pth")
    assert load_checkpoint(tmp_path / "old.pth", cfg)["config"] == stored
    with pytest.raises(CheckpointError, match="different model config"):
        load_checkpoint(tmp_path / "old.pth", replace(cfg, **{"model.eta": 0.3}))

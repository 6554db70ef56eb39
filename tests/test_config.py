"""Config dataclasses: round trips, overrides, validation and unknown keys."""
from __future__ import annotations

import pytest

from cism_lib.config import (ModelConfig, RunConfig, config_hash, from_dict, load_config, replace,
                             save_config, to_dict)
from cism_lib.errors import ConfigError


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

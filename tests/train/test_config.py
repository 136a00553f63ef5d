"""Configs: strict keys with suggestions, overrides, trick specs, round trips."""

from __future__ import annotations

import pytest
import yaml

from trickbag.train.config import RunConfig, TrickSpec, load_config, parse_trick


def test_defaults_overrides_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"name": "synthetic"}, "tricks": ["mixup:alpha=0.4", {"cutout": {"size": 4}}]}))
    cfg = load_config(path, ["train.epochs=3", "model.width=8", "optimizer.lr=0.1", "tricks=[flooding]"])
    assert cfg.train.epochs == 3 and cfg.model == {"name": "small_cnn", "width": 8}
    assert cfg.optimizer["lr"] == 0.1 and cfg.optimizer["momentum"] == 0.9  # extends the default
    named = load_config({"optimizer": {"name": "adamw", "lr": 1e-3}})
    assert named.optimizer == {"name": "adamw", "lr": 1e-3}  # a named section stands alone
    assert cfg.tricks == [TrickSpec("flooding")]
    again = load_config(yaml.safe_load(cfg.to_yaml()))
    assert again.to_dict() == cfg.to_dict()
    assert isinstance(load_config(cfg), RunConfig)


def test_trick_specs():
    assert parse_trick("mixup") == TrickSpec("mixup")
    assert parse_trick("mixup:alpha=0.2,soft_targets=true") == TrickSpec("mixup", {"alpha": 0.2, "soft_targets": True})
    assert parse_trick({"cutout": {"size": 8}}) == TrickSpec("cutout", {"size": 8})
    assert parse_trick({"ema": None}) == TrickSpec("ema")
    assert TrickSpec("mixup", {"alpha": 0.2}).label() == "mixup:alpha=0.2"
    with pytest.raises(ValueError, match="is not key=value"):
        parse_trick("mixup:0.2")


@pytest.mark.parametrize(
    "raw, overrides, match",
    [
        ({"trian": {}}, [], "unknown config section 'trian'; did you mean 'train'"),
        ({"train": {"epoch": 3}}, [], "unknown key in train 'epoch'; did you mean 'epochs'"),
        ({"data": {"batchsize": 3}}, [], "unknown key in data 'batchsize'; did you mean 'batch_size'"),
        ({"schedule": {"floor": 0.1}}, [], "config section 'schedule' needs a 'name'"),
        ({}, ["train.epochs"], "is not key=value"),
        ({}, ["modle.width=3"], "unknown config section 'modle'; did you mean 'model'"),
        ({"tricks": "mixup"}, [], "tricks must be a list"),
    ],
)
def test_bad_configs_name_the_closest_valid_key(raw, overrides, match):
    with pytest.raises(ValueError, match=match):
        load_config(raw, overrides)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ValueError, match="is not valid YAML"):
        load_config(bad)


def test_builder_rejects_bad_names_before_training():
    from trickbag.data import synthetic
    from trickbag.train.build import build_run

    splits = synthetic(num_train=64, num_test=16, shape=(1, 8, 8), num_classes=2)
    cases = [
        ({"model": {"name": "resnet50"}}, "unknown model 'resnet50'"),
        ({"model": {"name": "small_cnn", "widht": 4}}, "unknown parameter for model small_cnn 'widht'; did you mean 'width'"),
        ({"optimizer": {"name": "adamm", "lr": 0.1}}, "unknown optimizer 'adamm'"),
        ({"loss": {"name": "focal"}}, "unknown loss 'focal'; did you mean 'focal_loss'"),
        ({"schedule": {"name": "cosine"}}, "unknown schedule 'cosine'"),
        ({"schedule": {"name": "multistep"}}, "schedule multistep needs milestones"),
        ({"data": {"name": "mnist"}}, "unknown data set 'mnist'; did you mean 'fashion_mnist'"),
        ({"data": {"name": "synthetic", "loader": "gpu"}}, "unknown data.loader 'gpu'"),
    ]
    for raw, match in cases:
        raw = {"data": {"name": "synthetic", "batch_size": 16}, **raw, "train": {"steps": 1, "epochs": None, "progress": False}}
        with pytest.raises(ValueError, match=match):
            build_run(load_config(raw), splits=splits if raw["data"]["name"] == "synthetic" else None)

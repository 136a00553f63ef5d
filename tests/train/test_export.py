"""best_model.pt and `trickbag export`: the weights alone, and a torch.export program that runs
without trickbag and reproduces the model."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from trickbag.cli import main

CONFIG = {
    "data": {"name": "synthetic", "options": {"num_train": 192, "num_test": 64, "shape": [1, 8, 8], "num_classes": 3},
             "batch_size": 32},
    "model": {"name": "small_cnn", "width": 4},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "tricks": ["blurpool"],  # model surgery: export must rebuild it
    "train": {"epochs": 3, "progress": False, "keep_best": 1, "monitor": "val_loss"},
}


def test_best_model_holds_the_best_epochs_weights_and_exports(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    best = json.loads((run / "checkpoints" / "best.json").read_text())[0]
    assert results["best_model"].startswith(f"epoch {best['epoch']}, the best by val_loss")
    weights = torch.load(run / "best_model.pt", weights_only=True)
    ckpt = torch.load(run / "checkpoints" / best["file"], weights_only=True)
    assert all(torch.equal(weights[k], ckpt["model"][k]) for k in weights)
    assert results["model_input"] == {"input_shape": [1, 8, 8], "num_classes": 3, "input_dtype": "float32",
                                      "vocab_size": None}

    assert main(["export", str(run)]) == 0
    assert "exported:" in capsys.readouterr().out
    program = torch.export.load(run / "model.pt2").module()
    from trickbag.train.export import load_run_model

    model, _ = load_run_model(run)
    x = torch.randn(5, 1, 8, 8)  # another batch size than the example: the batch dimension is dynamic
    with torch.no_grad():
        torch.testing.assert_close(program(x), model(x), rtol=1e-4, atol=1e-5)
    assert main(["export", str(tmp_path)]) == 2  # not a run: one clear line, exit code 2
    assert "is not a finished run directory" in capsys.readouterr().err

"""GANs: metrics against references and hand counts, the three training loops on a 2-mode
mixture, the recipes' settings, and `trickbag gan` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trickbag.cli import main
from trickbag.gan import (
    METHODS,
    DCGANCritic,
    DCGANGenerator,
    FeatureFrechet,
    Mixture,
    MLPCritic,
    MLPGenerator,
    frechet_distance,
    gaussian_stats,
    grid,
    method,
    mode_coverage,
    ring,
    train_gan,
)
from trickbag.gan.runner import load_gan_config

TWO = Mixture(torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), 0.1)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: one thread is fastest, and immune to a busy machine's oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_frechet_distance_matches_scipys_matrix_square_root(gen):
    linalg = pytest.importorskip("scipy.linalg")
    a, b = torch.randn(6, 6, generator=gen, dtype=torch.float64), torch.randn(6, 6, generator=gen, dtype=torch.float64)
    s1, s2 = a @ a.T + 0.1 * torch.eye(6, dtype=torch.float64), b @ b.T
    m1, m2 = torch.randn(6, generator=gen, dtype=torch.float64), torch.randn(6, generator=gen, dtype=torch.float64)
    root = linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    expected = float(((m1 - m2) ** 2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * float(root.trace()))
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-7)
    assert frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(frechet_distance(m2, s2, m1, s1), rel=1e-9)


def test_mode_coverage_counts_by_hand():
    mixture = grid(2, spacing=2.0, std=0.1)  # modes at (+-1, +-1), 3 sd = 0.3
    samples = torch.tensor(
        [[-1.0, -1.0]] * 6          # mode 0: 6 high-quality samples
        + [[-1.2, 1.2]] * 3         # mode 1: at distance 0.28 < 0.3, 3 samples
        + [[1.25, -1.25]] * 3       # mode 2: at distance 0.35 > 0.3: not high quality
        + [[0.0, 0.0]] * 4          # between modes
    )
    c = mode_coverage(samples, mixture)  # fair share 16 / 4 = 4; a fifth of it: 0.8 samples
    assert c.counts == [6, 3, 0, 0] and c.modes_covered == 2
    assert c.high_quality == pytest.approx(9 / 16)
    strict = mode_coverage(samples, mixture, min_share=1.0)  # 4 samples needed: mode 1 drops out
    assert strict.modes_covered == 1
    # within 10 sd (1.0) the three samples at 0.35 reach mode 2; the four at the centre (1.41) reach nothing
    assert c.modes_reached == 3
    # distances in sd: 6 x 0, 3 x 2.83, 3 x 3.54, 4 x 14.1: torch's median (the lower middle) is 2.83
    assert c.median_sd == pytest.approx(0.2 * 2**0.5 / 0.1, rel=1e-6)
    with pytest.raises(ValueError, match=r"samples must be \(n, 2\)"):
        mode_coverage(torch.zeros(3, 3), mixture)


def test_mixtures_are_the_standard_ones(gen):
    r = ring(8, radius=2.0, std=0.02)
    assert torch.allclose(r.centers.norm(dim=1), torch.full((8,), 2.0))
    g = grid(5, spacing=2.0, std=0.05)
    assert sorted(set(g.centers[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0] and g.modes == 25
    samples = g.sample(5000, generator=gen)
    c = mode_coverage(samples, g)  # the data itself: every mode, nearly all within 3 sd
    assert c.modes_covered == 25 and c.high_quality > 0.98


def test_the_recipes_are_the_papers():
    assert (METHODS["wgan"].optimizer, METHODS["wgan"].lr, METHODS["wgan"].clip, METHODS["wgan"].n_critic) == \
        ("rmsprop", 5e-5, 0.01, 5)
    gp = METHODS["wgan_gp"]
    assert (gp.optimizer, gp.lr, gp.betas, gp.gp_weight, gp.n_critic) == ("adam", 1e-4, (0.0, 0.9), 10.0, 5)
    assert (METHODS["gan"].loss, METHODS["gan"].n_critic) == ("nonsaturating", 1)
    with pytest.raises(ValueError, match="unknown GAN method 'wgangp'; did you mean 'wgan_gp'"):
        method("wgangp")
    with pytest.raises(ValueError, match="unknown setting of GAN method 'wgan' 'n_critics'; did you mean 'n_critic'"):
        method("wgan", n_critics=3)


def test_wgan_gp_learns_both_modes_of_a_two_mode_mixture():
    torch.manual_seed(0)
    g, d = MLPGenerator(2, (2,), hidden=64, depth=2), MLPCritic((2,), hidden=64, depth=2)
    history = train_gan(g, d, TWO.sample, recipe=method("wgan_gp", lr=1e-3, betas=(0.5, 0.9)), steps=400,
                        batch_size=128, seed=0, log_every=50)
    with torch.no_grad():
        c = mode_coverage(g(torch.randn(1000, 2)), TWO)
    assert c.modes_covered == 2 and c.high_quality > 0.5, c
    assert history[-1]["w_estimate"] < 0.5 * history[0]["w_estimate"]  # the critic's estimate falls as G learns
    assert all(h["gp"] >= 0 for h in history)


def test_the_non_saturating_gan_learns_and_wgan_keeps_its_critic_clipped():
    torch.manual_seed(1)
    g, d = MLPGenerator(2, (2,), hidden=32, depth=2), MLPCritic((2,), hidden=32, depth=2)
    before = mode_coverage(g(torch.randn(1000, 2)).detach(), TWO).high_quality
    train_gan(g, d, TWO.sample, recipe=method("gan", lr=1e-3), steps=300, batch_size=128, seed=2)
    with torch.no_grad():
        after = mode_coverage(g(torch.randn(1000, 2)), TWO)
    assert before < 0.05 and after.high_quality > 0.3
    torch.manual_seed(0)
    g, d = MLPGenerator(2, (2,), hidden=32, depth=2), MLPCritic((2,), hidden=32, depth=2)
    history = train_gan(g, d, TWO.sample, recipe="wgan", steps=20, batch_size=64, seed=0, log_every=10)
    assert all(p.abs().max() <= 0.01 for p in d.parameters())
    assert history[-1]["w_estimate"] > 0 and "gp" not in history[-1]


def test_dcgan_nets_train_on_28x28_images():
    torch.manual_seed(0)
    images = (torch.rand(64, 1, 28, 28) * 255).to(torch.uint8)
    from trickbag.gan import ImageSampler

    g, d = DCGANGenerator(16, width=4), DCGANCritic(width=4)
    history = train_gan(g, d, ImageSampler(images).sample, recipe="wgan_gp", steps=3, batch_size=8, log_every=1)
    assert len(history) == 3 and all(torch.isfinite(torch.tensor(h["d_loss"])) for h in history)
    assert g(torch.randn(2, 16)).shape == (2, 1, 28, 28)


def test_feature_frechet_is_zero_for_the_same_images_and_grows_with_a_shift(gen):
    torch.manual_seed(0)
    features = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5, 3), torch.nn.ReLU(), torch.nn.Flatten())
    real = torch.rand(400, 1, 28, 28, generator=gen) * 2 - 1
    fd = FeatureFrechet(features, real)
    assert fd(real) == pytest.approx(0.0, abs=1e-6)
    assert fd((real + 0.3).clamp(-1, 1)) > fd((real + 0.1).clamp(-1, 1)) > 0.0
    mu, cov = gaussian_stats(torch.randn(50, 3, generator=gen))
    assert mu.shape == (3,) and cov.shape == (3, 3)


CONFIG = """
data: {name: ring, modes: 8}
model: {name: mlp, hidden: 16, depth: 2, z_dim: 2}
methods: [gan, {wgan_gp: {lr: 1.0e-3}}]
seeds: 2
train: {steps: 12, batch_size: 32, eval_every: 6, log_every: 6, threads: 1}
eval: {samples: 200}
"""


def test_trickbag_gan_end_to_end_resumes_and_reports(tmp_path, capsys):
    cfg = tmp_path / "gan.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    assert main(["gan", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "wgan_gp:lr=0.001 modes covered" in printed and "report:" in printed
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["runs"]) == ["gan@0", "gan@1", "wgan_gp:lr=0.001@0", "wgan_gp:lr=0.001@1"]
    run = results["runs"]["wgan_gp:lr=0.001@1"]
    assert [h["step"] for h in run["history"] if "modes_covered" in h] == [6, 12]
    md = (out / "report.md").read_text()
    assert "| GAN (non-saturating) |" in md and "| WGAN-GP (Adam) [lr=0.001] |" in md and "lambda 10" in md
    from PIL import Image

    for png in ("samples_gan_seed0.png", "samples_wgan_gp-lr0.001_seed1.png", "curves.png"):
        with Image.open(out / png) as img:
            assert img.size[0] > 300
    stamp = (out / "results.json").stat().st_mtime_ns
    assert main(["gan", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0  # nothing left to run
    assert json.loads((out / "results.json").read_text())["runs"] == results["runs"]
    assert (out / "results.json").stat().st_mtime_ns >= stamp
    kept = (out / "config.yaml").read_text()
    assert main(["gan", "--config", str(cfg), "--out", str(out), "seeds=3", "--quiet"]) == 2  # another config
    assert "holds results of another config" in capsys.readouterr().err
    assert (out / "config.yaml").read_text() == kept  # the refused config does not replace the saved one
    # Results saved before a key existed (here eval.reach_sds) resume: the saved config reads with its default.
    saved = json.loads((out / "results.json").read_text())
    del saved["config"]["eval"]["reach_sds"]
    (out / "results.json").write_text(json.dumps(saved))
    assert main(["gan", "--config", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "results.json").read_text())["runs"] == results["runs"]


def test_config_keys_are_checked_with_suggestions():
    with pytest.raises(ValueError, match="unknown key in train 'step'; did you mean 'steps'"):
        load_gan_config({"train": {"step": 10}})
    with pytest.raises(ValueError, match="unknown data name 'rings'; did you mean 'ring'"):
        load_gan_config({"data": "rings"})
    with pytest.raises(ValueError, match=r"unknown key in model \(mlp\) 'width'"):
        load_gan_config({"model": {"name": "mlp", "width": 3}})
    with pytest.raises(ValueError, match="unknown GAN method 'wgan-gp'"):
        load_gan_config({"methods": ["wgan-gp"]})


def test_fashion_mnist_generation_with_our_feature_frechet(tmp_path):
    from trickbag.data.vision import DEBIAN_FMNIST

    if not (DEBIAN_FMNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    from trickbag.gan.runner import run

    summary = run({"data": {"name": "fashion_mnist", "subset": 2000}, "model": {"name": "dcgan", "width": 4, "z_dim": 8},
                   "methods": ["wgan_gp", "gan"], "seeds": 1,
                   "train": {"steps": 4, "batch_size": 16, "eval_every": 2, "log_every": 2, "threads": 1},
                   "eval": {"samples": 100, "real_samples": 300, "classifier_epochs": 4, "classifier_width": 8,
                            "classifier_subset": 2000}},
                  out=tmp_path, progress=False)
    row = summary["summary"]["wgan_gp"]
    results = json.loads((tmp_path / "results.json").read_text())
    floor = results["classifier"]["fd_real_floor"]
    assert row["fd"] > floor >= 0  # untrained samples are far worse than real images
    assert results["classifier"]["test_acc"] > 0.4 and (tmp_path / "samples_wgan_gp_seed0.png").exists()
    md = (tmp_path / "report.md").read_text()
    assert "not FID" in md
    gan_row = next(line for line in md.splitlines() if line.startswith("| GAN (non-saturating) |"))
    assert "nan" not in gan_row and "n/a (no critic estimate)" in gan_row  # the GAN has no Wasserstein estimate


SHIPPED = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "configs").glob("gan_*.yaml"))


def test_every_gan_config_is_shipped_and_tested():
    assert {"gan_ring.yaml", "gan_grid.yaml", "gan_ring_clip.yaml", "gan_fashion_mnist.yaml",
            "gan_fashion_mnist_dcgan.yaml"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_gan_configs_parse_and_run_shrunk(name, tmp_path):
    path = Path(__file__).resolve().parents[2] / "configs" / name
    cfg = load_gan_config(path)
    assert cfg.seeds >= 1 and len(cfg.recipes()) >= 2
    if cfg.data["name"] == "fashion_mnist":
        return  # the Fashion-MNIST runner is tested above on a subset
    from trickbag.gan.runner import run

    run(path, out=tmp_path, overrides=["seeds=1", "train.steps=4", "train.eval_every=2", "eval.samples=100"],
        progress=False)
    assert len(json.loads((tmp_path / "results.json").read_text())["runs"]) == len(cfg.recipes())

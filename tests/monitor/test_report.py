"""`trickbag report RUN_DIR` and `trickbag lr-find`, and the HTML opened in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from trickbag.cli import main

CONFIG = {
    "data": {"name": "synthetic", "options": {"num_train": 512, "num_test": 128, "shape": [1, 8, 8], "num_classes": 4},
             "batch_size": 32},
    "model": {"name": "small_cnn", "width": 8},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "tricks": [{"monitor": {"every_steps": 4}}],
    "train": {"epochs": 3, "threads": 1, "log_every": 4},
}


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));
  const out = document.createElement('pre'); out.id = 'trickbag-check';
  out.textContent = 'IMAGES ' + imgs.length + ' BROKEN ' + JSON.stringify(bad);
  document.body.appendChild(out);
});
</script></body>"""


def open_in_chromium(html: Path) -> str:
    """Load the page in headless Chromium and return what the check script found."""
    probe = html.with_name("_probe.html")
    probe.write_text(html.read_text().replace("</body>", CHECK))
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={html.parent / '_chromium'}", "--allow-file-access-from-files",
           "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    subprocess.run(cmd[:-2] + ["--window-size=1200,2400", f"--screenshot={html.parent / 'report_screenshot.png'}",
                               probe.as_uri()], capture_output=True, timeout=120)
    return dom


def test_run_report_has_every_plot_and_loads_in_chromium(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run)]) == 0
    assert main(["lr-find", "--config", str(config), "--out", str(run), "--steps", "60", "--min", "1e-5"]) == 0
    out = capsys.readouterr().out
    assert "steepest descent" in out and "cyclical bounds" in out
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    for png in ("loss.png", "lr_metrics.png", "activations.png", "gradients.png", "update_ratio.png",
                "dead_units.png", "grad_norms.png", "filters.png", "lr_find.png"):
        assert f'src="{png}"' in html and (run / png).stat().st_size > 2000, png
    assert "Diagnoses" in html and "Learning-rate range test" in html
    if chromium() is None:
        pytest.skip("Chromium is not installed (Debian package chromium; .ci/run installs it)")
    dom = open_in_chromium(run / "report.html")
    assert "IMAGES 9 BROKEN []" in dom, dom[-500:]


def test_ablation_report_loads_in_chromium(tmp_path):
    if chromium() is None:
        pytest.skip("Chromium is not installed (Debian package chromium; .ci/run installs it)")
    from trickbag.ablation import run

    cfg = {k: v for k, v in CONFIG.items() if k != "tricks"}
    cfg["train"] = {"epochs": 1, "threads": 1}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run(path, "ema:decay=0.9", seeds=2, out=tmp_path / "abl", progress=False)
    dom = open_in_chromium(tmp_path / "abl" / "report.html")
    assert "IMAGES 3 BROKEN []" in dom, dom[-500:]


def _has_colour(png, rgb, tol=40) -> bool:
    from matplotlib import image

    px = (image.imread(png)[..., :3] * 255).reshape(-1, 3)
    import numpy as np

    return bool((np.abs(px - np.array(rgb)).max(axis=1) < tol).any())


def test_a_single_sample_is_drawn_with_a_marker_and_the_band_is_the_thresholds(tmp_path):
    from trickbag.monitor import THRESHOLDS
    from trickbag.monitor.report import _series_plot

    one = [{"step": 3, "update_ratio": [2e-3]}]
    assert _series_plot(one, ["0: Linear"], lambda s, i: s["update_ratio"][i], tmp_path / "one.png", "ratio", log=True,
                        band=(THRESHOLDS["update_low"], THRESHOLDS["update_high"]))
    assert _has_colour(tmp_path / "one.png", (0x1F, 0x77, 0xB4))  # the point is there, in the first colour
    # a ratio outside the band is diagnosed, one inside is not: the band is where no diagnosis is raised
    from trickbag.monitor import diagnose

    info = {"activations": [], "weights": ["w"]}
    samples = [{"step": i, "loss": 1.0, "update_ratio": [r]} for i, r in enumerate([0.15] * 5)]
    assert "update_too_large" in {d["code"] for d in diagnose(samples, [], info)}
    samples = [{"step": i, "loss": 1.0, "update_ratio": [0.04]} for i in range(5)]
    assert "update_too_large" not in {d["code"] for d in diagnose(samples, [], info)}
    assert THRESHOLDS["update_low"] < 0.04 < THRESHOLDS["update_high"]

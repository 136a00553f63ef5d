"""Draw every schedule in the catalog to docs/tricks/img/<name>.png (used by the method cards).

Run: python docs/plot_schedules.py
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from trickbag import schedules as S  # noqa: E402

TOTAL = 400
EXAMPLES = {
    "constant": S.constant(),
    "linear_warmup": S.linear_warmup(80),
    "step_decay": S.step_decay(100, 0.5),
    "multistep": S.multistep([200, 300], 0.1),
    "exponential": S.exponential(0.99),
    "linear_decay": S.linear_decay(TOTAL, floor=0.05),
    "inverse_sqrt": S.inverse_sqrt(40),
    "cosine_decay": S.cosine_decay(TOTAL),
    "warmup_cosine": S.warmup_cosine(TOTAL, warmup_steps=40),
    "cyclic_cosine": S.cyclic_cosine(100),
    "triangular": S.triangular(0.25, 1.0, 50, mode="triangular2"),
    "sgdr": S.sgdr(40, cycle_mult=2),
    "warmup_cosine_restarts": S.warmup_cosine_restarts(100, warmup_steps=15, gamma=0.6),
    "one_cycle": S.one_cycle(TOTAL),
    "join": S.join([S.linear_warmup(40), S.constant(), S.cosine_decay(160)], [40, 240]),
}


def main() -> None:
    out = Path(__file__).parent / "tricks" / "img"
    out.mkdir(parents=True, exist_ok=True)
    steps = list(range(TOTAL))
    for name, schedule in EXAMPLES.items():
        fig, ax = plt.subplots(figsize=(4.2, 2.5), dpi=100)
        ax.plot(steps, [schedule(s) for s in steps], color="#1f6feb", linewidth=1.6)
        ax.set_title("\n".join(textwrap.wrap(repr(schedule), 60)), fontsize=7)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("multiplier", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png")
        plt.close(fig)
    print(f"wrote {len(EXAMPLES)} plots to {out}")


if __name__ == "__main__":
    main()

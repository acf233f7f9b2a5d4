"""The loss plot (rundir.PLOT) from the training log (rundir.read_log): raw and smoothed training loss, eval
loss when present.

Training layer helper; the web UI's live plot reads the same log and uses `smooth`.
"""

from __future__ import annotations

from pathlib import Path

from .. import rundir


def smooth(values: list[float], weight: float | None = None) -> list[float]:
    """Exponential moving average with a bias correction, stronger for longer curves."""
    if not values:
        return []
    if weight is None:
        weight = min(0.9, 1.8 * (1 / (1 + 2.718 ** (-0.05 * len(values))) - 0.5))
    out, last = [], 0.0
    for i, v in enumerate(values, 1):
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight**i) if weight else v)
    return out


def plot_loss(output_dir: str | Path) -> Path | None:
    rows = rundir.read_log(output_dir)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    steps, losses = zip(*train, strict=False)
    ax.plot(steps, losses, color="#1f77b4", alpha=0.35, label="loss")
    ax.plot(steps, smooth(list(losses)), color="#1f77b4", label="loss (smoothed)")
    if evals:
        e_steps, e_losses = zip(*evals, strict=False)
        ax.plot(e_steps, e_losses, "o-", color="#d62728", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"training loss of {Path(output_dir).name}")
    ax.grid(alpha=0.3)
    ax.legend()
    out = rundir.plot_path(output_dir)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out

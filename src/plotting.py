"""PNG plots of training runs: what people would rather see than read."""

import json

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

from src.files import TEXT_FILE_MODE, replace_atomically  # noqa: E402

FIGURE_DPI = 120
# Points averaged for the smoothed loss curve (single-batch losses are noisy).
SMOOTHING_WINDOW = 10


def read_metrics(metrics_path: str) -> list[dict]:
    """The records of a metrics.jsonl file (src.training), in order."""
    with open(metrics_path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_training(metrics_path: str, png_path: str, title: str, eval_results: dict | None = None) -> None:
    """Loss per step from `metrics.jsonl`; with `eval_results` (pretrain_eval's dict) a second
    panel compares masked-LM and NSP accuracy with their majority baselines."""
    records = read_metrics(metrics_path)
    panels = 2 if eval_results else 1
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    loss_axis = axes[0][0]
    steps, losses = [r["step"] for r in records], [r["loss"] for r in records]
    loss_axis.plot(steps, losses, linewidth=0.8, alpha=0.35, label="logged steps")
    if len(losses) >= 2 * SMOOTHING_WINDOW:
        smoothed = np.convolve(losses, np.ones(SMOOTHING_WINDOW) / SMOOTHING_WINDOW, mode="valid")
        loss_axis.plot(steps[SMOOTHING_WINDOW - 1:], smoothed, linewidth=1.5,
                       label=f"mean of {SMOOTHING_WINDOW}")
        loss_axis.legend()
    loss_axis.set_xlabel("step")
    loss_axis.set_ylabel("training loss (masked LM + NSP)")
    loss_axis.set_title(title)
    loss_axis.grid(alpha=0.3)
    if eval_results:
        names = ["MLM accuracy", "MLM majority\nbaseline", "NSP accuracy", "NSP majority\nbaseline"]
        values = [eval_results["mlm_accuracy"], eval_results["mlm_majority_accuracy"],
                  eval_results["nsp_accuracy"], eval_results["nsp_majority_accuracy"]]
        bars = axes[0][1].bar(names, values, color=["tab:blue", "tab:gray", "tab:green", "tab:gray"])
        axes[0][1].bar_label(bars, fmt="%.3f")
        axes[0][1].set_ylim(0, 1)
        axes[0][1].set_title("held-out evaluation")
    figure.tight_layout()
    try:
        replace_atomically(png_path, lambda tmp_path: figure.savefig(tmp_path, dpi=FIGURE_DPI), suffix=".png",
                           mode=TEXT_FILE_MODE)
    finally:
        plt.close(figure)

"""The test table: samples, correct and accuracy per class, from torchmetrics' confusion matrix."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor


def per_class_table(matrix: Tensor, labels: Sequence[str]) -> dict:
    """Samples, correct and accuracy per true class and in total, from a confusion matrix."""
    samples = matrix.sum(1)
    correct = matrix.diagonal()
    classes = [
        {"label": label, "samples": int(n), "correct": int(c), "accuracy": float(c / n) if n else float("nan")}
        for label, n, c in zip(labels, samples, correct)
    ]
    total, right = int(samples.sum()), int(correct.sum())
    return {
        "classes": classes,
        "samples": total,
        "correct": right,
        "accuracy": right / total if total else float("nan"),
        "confusion_matrix": matrix.tolist(),
    }


def format_table(results: dict) -> str:
    """The per-class test table as printed to the console (and copied into the README)."""
    lines = [
        f"| {'class':<8} | {'samples':>7} | {'correct':>7} | {'accuracy':>8} |",
        f"|{'-' * 10}|{'-' * 8}:|{'-' * 8}:|{'-' * 9}:|",
    ]
    for row in results["classes"]:
        lines.append(
            f"| {row['label']:<8} | {row['samples']:>7} | {row['correct']:>7} | {100 * row['accuracy']:>7.2f}% |"
        )
    lines.append(
        f"| {'total':<8} | {results['samples']:>7} | {results['correct']:>7} | {100 * results['accuracy']:>7.2f}% |"
    )
    return "\n".join(lines)

"""The cross-check's figures (:mod:`kws.tools.cross_check`): per group of clips, the recall, false
positives and balanced accuracy in every view (fresh, board, stream), and the markdown table."""

from __future__ import annotations

import numpy as np

VIEWS = ("fresh", "board", "stream")


def metrics(
    index: np.ndarray,
    truth: list[str],
    predicted: dict[str, list[str]],
    heard: dict[int, bool],
    alarms: dict[int, int],
    keywords: list[str],
) -> dict:
    """Counts and rates of one group of clips in every view."""
    true = np.array([truth[i] for i in index])
    out = {"clips": {label: int((true == label).sum()) for label in [*keywords, "unknown", "silence"]}}
    for view in ("fresh", "board"):
        pred = np.array([predicted[view][i] for i in index])
        recall = {kw: [int(((true == kw) & (pred == kw)).sum()), int((true == kw).sum())] for kw in keywords}
        others = ~np.isin(true, keywords)
        fp = {
            kind: [int(((true == kind) & np.isin(pred, keywords)).sum()), int((true == kind).sum())]
            for kind in ("unknown", "silence")
        }
        fp["all"] = [int((others & np.isin(pred, keywords)).sum()), int(others.sum())]
        present = [c for c in [*keywords, "unknown", "silence"] if (true == c).any()]
        balanced = float(np.mean([(pred[true == c] == c).mean() for c in present])) if present else float("nan")
        confusion = {t: {p: int(((true == t) & (pred == p)).sum()) for p in sorted(set(pred))} for t in present}
        out[view] = dict(recall=recall, false_positives=fp, balanced_accuracy=balanced, confusion=confusion)
    alarmed = np.array([alarms.get(int(i), 0) > 0 for i in index], bool)
    fp = {kind: [int((alarmed & (true == kind)).sum()), int((true == kind).sum())] for kind in ("unknown", "silence")}
    fp["all"] = [fp["unknown"][0] + fp["silence"][0], fp["unknown"][1] + fp["silence"][1]]
    out["stream"] = dict(
        heard={
            kw: [int(sum(heard.get(int(i), False) for i in index if truth[i] == kw)), int((true == kw).sum())]
            for kw in keywords
        },
        false_positives=fp,
        false_alarms=int(sum(alarms.get(int(i), 0) for i in index)),
        false_alarms_on_keywords=int(sum(alarms.get(int(i), 0) for i in index if truth[i] in keywords)),
    )
    return out


def rate(pair) -> float:
    return pair[0] / pair[1] if pair[1] else float("nan")


def table(groups: dict[str, dict], keywords: list[str], name: str) -> str:
    """The groups as a markdown table: fresh · board · stream in each cell."""
    pct = lambda values: " · ".join("-" if np.isnan(v) else f"{100 * v:.0f}" for v in values) + " %"  # noqa: E731
    head = " | ".join(f"{kw}: fresh · board · stream" for kw in keywords)
    lines = [
        f"| {name}: voices | clips ({' / '.join(keywords)} / other / noise) | {head} | false pos.: "
        "fresh · board · stream | bal. acc.: fresh · board |",
        "|---|---:|" + "---:|" * (len(keywords) + 2),
    ]
    for group, g in groups.items():
        counts = " / ".join(str(g["clips"][k]) for k in [*keywords, "unknown", "silence"])
        cells = [
            pct([rate(g["fresh"]["recall"][kw]), rate(g["board"]["recall"][kw]), rate(g["stream"]["heard"][kw])])
            for kw in keywords
        ]
        fp = pct([rate(g[view]["false_positives"]["all"]) for view in VIEWS])
        balanced = pct([g["fresh"]["balanced_accuracy"], g["board"]["balanced_accuracy"]])
        lines.append(
            f"| {'**' + group + '**' if '/' not in group else group} | {counts} | "
            f"{' | '.join(cells)} | {fp} | {balanced} |"
        )
    return "\n".join(lines)

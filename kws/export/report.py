"""The export's console summary, from report.json's contents."""

from __future__ import annotations

from pathlib import Path

from kws.export.qat_verify import report_lines
from kws.export.tflite import RUNTIME_LABELS
from kws.streams.evaluate import table

ROUNDING_RUNTIMES = {
    "tflite_micro": "tflite-micro",
    "litert": "LiteRT",
    "litert_reference_kernels": "LiteRT reference kernels",
}


def format_report(report: dict) -> str:
    """The console summary: artifact sizes, ops, arena and every runtime's test accuracy."""
    lines = [
        f"Export of {report['source']} -> {report['out_dir']}",
        "",
        f"| {'artifact':<20} | {'bytes':>8} |",
        f"|{'-' * 22}|{'-' * 9}:|",
    ]
    lines += [f"| {name:<20} | {size:>8,} |" for name, size in report["artifacts"].items()]
    q = report["int8"]
    lines += [
        "",
        f"int8 ops: {', '.join(report['ops'])}",
        f"int8 input: scale {q['input_scale']:.8g}, zero point {q['input_zero_point']}",
        f"tflite-micro tensor arena: {report['tensor_arena']['bytes']:,} bytes (smallest that runs, by bisection)",
        "",
    ]
    lines += accuracy_table(report)
    lines += [
        "",
        f"{report['test_clips']} test clips; int8 top-1 agreement with PyTorch: "
        f"{100 * report['int8_top1_agreement_with_pytorch']:.2f}%",
    ]
    for key, what in (
        ("tflite_micro_vs_litert_int8", "LiteRT"),
        ("tflite_micro_vs_litert_reference_kernels_int8", "LiteRT's reference kernels"),
    ):
        c = report[key]
        lines.append(
            f"tflite-micro vs {what}: int8 outputs identical"
            if c["identical"]
            else f"tflite-micro vs {what}: {c['outputs_differing']} of {c['outputs']} int8 outputs differ (by at most "
            f"{c['max_difference']}), top-1 agreement {100 * c['top1_agreement']:.2f}%"
        )
    rounding = report["int8_rounding"]
    if rounding["checked"]:
        for name in ROUNDING_RUNTIMES:
            found = rounding[name]
            lines.append(
                f"numpy int8 reference: {ROUNDING_RUNTIMES[name]} = "
                + (
                    ", ".join(f"{op} {' or '.join(modes)} rounding" for op, modes in found.items()) + " (bit for bit)"
                    if found
                    else "no rounding assignment matches"
                )
            )
        lines.append('  ("double or single": no output of that op fell where the two roundings differ)')
    else:
        lines.append(f"numpy int8 reference: not checked ({rounding['why']})")
    lines += report_lines(report)
    lines += stream_lines(report)
    lines += [f"Note: {note}" for note in report["notes"]]
    return "\n".join(lines)


VIEW_HEADERS = {"lead_in": "after a lead-in", "fresh": "fresh state"}


def accuracy_table(report: dict) -> list[str]:
    """Every runtime's test accuracy, one column per view of the test clips (after a lead-in, as
    a stream computes them, and from a fresh front-end state, as clip tools do)."""
    views = report.get("accuracy_views") or {"lead_in": report["accuracy"]}
    head = " | ".join(f"{'test, ' + VIEW_HEADERS[v]:>24}" for v in views)
    lines = [f"| {'runtime':<28} | {head} |", f"|{'-' * 30}|" + "|".join("-" * 25 + ":" for _ in views) + "|"]
    for name in report["accuracy"]:
        cells = " | ".join(f"{100 * views[v][name]:>23.2f}%" for v in views)
        lines.append(f"| {RUNTIME_LABELS[name]:<28} | {cells} |")
    for name, accuracies in report["compared"].items():
        cells = " | ".join(f"{100 * accuracies[v]:>23.2f}%" for v in views)
        lines.append(f"| {Path(name).name:<28} | {cells} |")
    return lines


def stream_lines(report: dict) -> list[str]:
    """The int8 model's stream test (tflite-micro) and the recognizer it keeps, if it ran."""
    stream, recognizer = report.get("stream_test"), report.get("recognizer")
    if not stream:
        return []
    lines = ["", table(stream, "int8 (tflite-micro) stream test")]
    lines += [str(summary) for summary in stream["streams"].values()]
    if recognizer and recognizer.get("calibrated_on"):
        r = recognizer["settings"]
        lines.append(
            "recognizer (report.json, model_settings.h; listen's default): "
            f"<= {recognizer['max_fa_per_hour']:g} false alarms/h on validation -> "
            f"threshold {r['detection_threshold']:.3f}, average window {r['average_window_ms']} ms, "
            f"suppression {r['suppression_ms']} ms, minimum count {r['minimum_count']}"
        )
    else:
        lines.append(
            "recognizer: no setting met the budget on validation; model_settings.h keeps micro_speech's defaults"
        )
    return lines

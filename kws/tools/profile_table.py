"""The profile (:mod:`kws.tools.profile`) as text: a plain-text table per layer with the total and
the latencies, human-readable counts and bytes, and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path


# -------------------------------------------------------------------------------------- table
def human_count(n: float, unit: str = "") -> str:
    """1234567 -> '1.23 M' (SI prefixes), small numbers as they are."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip()


def human_bytes(n: float) -> str:
    """Bytes in B, KiB, MiB (binary prefixes)."""
    for factor, prefix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(n) >= factor:
            return f"{n / factor:.1f} {prefix}"
    return f"{int(n)} B"


def format_profile_table(profile: dict) -> str:
    """The profile as a plain-text table: a row per layer, the total, then the latencies."""
    head = ("layer", "type", "output", "params", "nonzero", "float32", "int8", "FLOPs", "activation")
    rows = []
    for row in [*profile["layers"], {**profile["total"], "name": "total", "type": "", "output_shape": None}]:
        shape = row["output_shape"]
        rows.append(
            (
                row["name"],
                row["type"],
                "x".join(map(str, shape))
                if shape and all(isinstance(s, int) for s in shape)
                else ("" if shape is None else str(shape)),
                f"{row['parameters']:,}",
                f"{row['nonzero_parameters']:,}",
                human_bytes(row["bytes_float32"]),
                human_bytes(row["bytes_int8"]),
                human_count(row["flops"]),
                human_bytes(row["activation_bytes"]),
            )
        )
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    left = {0, 1, 2}

    def line(cells) -> str:
        return "  ".join(
            str(c).ljust(w) if i in left else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "-" * len(line(head))
    total = profile["total"]
    lines = [
        f"Model profile (input {'x'.join(map(str, profile['input_shape']))})",
        line(head),
        rule,
        *map(line, rows[:-1]),
        rule,
        line(rows[-1]),
    ]
    lines.append(
        f"peak activations {human_bytes(total['peak_activation_bytes'])} (largest input + output of one "
        "layer, float32, batch 1); "
        f"int8 = int8 weights + int32 biases, nonzero only: {human_bytes(total['bytes_int8_nonzero'])}"
    )
    how = profile.get("latency", {})
    for device, by_batch in profile.get("latency_ms", {}).items():
        name = profile.get("devices", {}).get(device, "")
        cells = ", ".join(f"batch {b}: {ms:.3f} ms ({ms / int(b) * 1000:.1f} us/example)" for b, ms in by_batch.items())
        lines.append(f"latency {device}{f' ({name})' if name else ''}: {cells}")
    if profile.get("latency_ms"):
        lines.append(f"  (median over {how.get('min_run_time_s')} s of runs, torch.utils.benchmark.Timer)")
    return "\n".join(lines)


def write_profile(profile: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile, indent=2) + "\n")
    return path

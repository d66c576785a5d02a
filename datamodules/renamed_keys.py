"""The data module's flat keys of before issue 19 and the group each lives in now
(``data.augment``, ``data.lead_in``, ``data.classes``, ``data.features``): one table for the
command line's hint and for reading checkpoints saved with the flat keys."""

from __future__ import annotations

import re

_AUGMENT = (
    "background_frequency",
    "background_volume",
    "time_shift_ms",
    "word_placement",
    "max_cut",
    "keep_fraction",
    "neighbour_probability",
    "neighbour_gap_s",
    "speed_probability",
    "speed_range",
    "eq_probability",
    "reverb_probability",
    "spec_masks",
)
_LEAD_IN = {
    "lead_in": "enabled",
    "lead_in_entries": "entries",
    "lead_in_eval_s": "eval_s",
    "lead_in_seconds": "seconds",
    "lead_in_level_ratio": "level_ratio",
    "lead_in_fresh_probability": "fresh_probability",
}
_CLASSES = ("silence_percentage", "unknown_percentage", "training_unknown_percentage")
_FEATURES = ("frontend", "sample_rate", "clip_ms", "window_ms", "stride_ms", "num_features")

# old flat key -> (group, key in the group)
RENAMED: dict[str, tuple[str, str]] = {
    **{key: ("augment", key) for key in _AUGMENT},
    **{key: ("lead_in", new) for key, new in _LEAD_IN.items()},
    **{key: ("classes", key) for key in _CLASSES},
    **{key: ("features", key) for key in _FEATURES},
}


def nest_flat_keys(hparams: dict) -> dict:
    """Data module arguments with any flat key of before moved into its group (a checkpoint
    saved before the groups); nested ones pass unchanged. A flat ``lead_in: true`` becomes
    ``lead_in: {enabled: true}``."""
    out = {k: v for k, v in hparams.items() if k not in RENAMED or (k == "lead_in" and isinstance(v, dict))}
    for key, value in hparams.items():
        if key in RENAMED and not (key == "lead_in" and isinstance(value, dict)):
            group, name = RENAMED[key]
            out[group] = {**(out.get(group) or {}), name: value}
    return out


def renamed_hint(message: str) -> str:
    """A line per old data key named in a command-line error ``message``: where it lives now; ''
    when none is named. Matches jsonargparse's wordings ('--data.max_cut', "Group 'data' does not
    accept option 'max_cut'") and a flat ``data.lead_in: true``, now a group."""
    named = re.findall(r"data\.(\w+)\b(?!\.)", message)
    named += re.findall(r"Group 'data' does not accept option '(\w+)'", message)
    lines = []
    for key in dict.fromkeys(named):
        if key == "lead_in" and "Unable to load config" in message:
            lines.append(
                "data.lead_in is a group now: data.lead_in.enabled true (YAML: data: {lead_in: {enabled: true}})"
            )
        elif key in RENAMED and key != "lead_in":
            group, name = RENAMED[key]
            lines.append(f"data.{key} is now data.{group}.{name} (YAML: data: {{{group}: {{{name}: ...}}}})")
    return "".join(line + "\n" for line in lines)


def merge_data_sections(base: dict, override: dict) -> dict:
    """``base`` data arguments updated by ``override`` (a config's ``data:`` section), groups
    merged key by key: a config that sets ``augment: {max_cut: 0.5}`` keeps the rest of the group.
    A flat key of before in ``override`` is refused, naming its new place."""
    flat = [
        key for key, value in override.items() if key in RENAMED and not (key == "lead_in" and isinstance(value, dict))
    ]
    if flat:
        raise ValueError(
            "the data options moved into groups: "
            + "; ".join(f"data.{key} is now data.{'.'.join(RENAMED[key])}" for key in flat)
        )
    out = dict(base)
    for key, value in override.items():
        both_groups = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = {**out[key], **value} if both_groups else value
    return out

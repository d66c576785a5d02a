"""The C sources the firmware compiles with the model: the int8 model as an aligned array,
``model_settings.h`` (front end, framing, labels, quantization, arena, the recognizer and its
inference stride), ``model_ops.h`` (the op resolver) and the front end's tables, all generated so
that nothing is typed twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from kws.audio.settings import FeatureSettings
from kws.export import ExportError
from kws.streams.recognize import DEFAULT_RECOGNIZER, RecognizerSettings
from kws.utils.c_source import GENERATED, c_array, c_float

TOOL = "python -m kws export"
# TFLM's MicroMutableOpResolver methods whose names do not follow CamelCase of the op name.
RESOLVER_METHODS = {
    "BATCH_MATMUL": "BatchMatMul",
    "LOG_SOFTMAX": "LogSoftmax",
    "L2_NORMALIZATION": "L2Normalization",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTM",
}


# The front ends' tables headers, as firmware/micro_frontend.h and mfcc_frontend.h include them
# (written by kws.export.frontend_tables).
HEADER_NAMES = {"micro": "micro_frontend_tables.h", "mfcc": "mfcc_frontend_tables.h"}


def tables_header(frontend: str) -> str:
    """The tables header of a front end's C code: micro_frontend_tables.h, mfcc_frontend_tables.h."""
    if frontend not in HEADER_NAMES:
        raise ExportError(f"no C front end {frontend!r} in the firmware; it has {sorted(HEADER_NAMES)}")
    return HEADER_NAMES[frontend]


def write_model_data(model: bytes, folder: Path, source: str) -> None:
    """model_data.h/.cc: the int8 model as a 16-byte aligned C array (TFLM reads it in place)."""
    (folder / "model_data.h").write_text(
        GENERATED.format(tool=TOOL, source=source)
        + "#ifndef KWS_MODEL_DATA_H_\n#define KWS_MODEL_DATA_H_\n\n"
        + "extern const unsigned char g_model[];\nextern const unsigned int "
        "g_model_len;\n\n#endif  // KWS_MODEL_DATA_H_\n"
    )
    (folder / "model_data.cc").write_text(
        GENERATED.format(tool=TOOL, source=source)
        + '#include "model_data.h"\n\n'
        + c_array("alignas(16) const unsigned char g_model[]", list(model), 12, lambda b: f"0x{b:02x}", "    ")
        + f"const unsigned int g_model_len = {len(model)};\n"
    )


def ignored_indices(labels: Sequence[str], recognizer: RecognizerSettings) -> tuple[int, int]:
    """(kSilenceIndex, kUnknownIndex): the labels the recognizer ignores, in the two slots the C
    recognizer has (-1: none)."""
    slots = {"silence": -1, "unknown": -1}
    for index, label in enumerate(labels):
        if label in recognizer.ignore:
            slot = "silence" if "silence" in label else "unknown"
            if slots[slot] != -1:
                ignored = [name for name in labels if name in recognizer.ignore]
                raise ExportError(
                    f"the recognizer ignores {ignored}: the firmware's recognizer "
                    "(firmware/recognize_commands.h) has one silence and one unknown slot"
                )
            slots[slot] = index
    return slots["silence"], slots["unknown"]


def write_model_settings(
    folder: Path,
    source: str,
    settings: FeatureSettings,
    labels: Sequence[str],
    input_q: tuple[float, int],
    output_q: tuple[float, int],
    arena: int,
    recognizer: RecognizerSettings = DEFAULT_RECOGNIZER,
    calibrated: bool = False,
) -> None:
    """model_settings.h: the feature front end, the labels, the int8 model's quantization and the
    command recognizer's settings with its inference stride (``calibrated``: for this model, else
    the defaults), so that the firmware and the host share one definition of each."""
    rec = recognizer
    rec_source = (
        "calibrated for this model on the validation stream (report.json: recognizer)"
        if calibrated
        else "micro_speech's defaults (no calibration)"
    )
    silence, unknown = ignored_indices(labels, recognizer)
    label_list = ", ".join(json.dumps(label) for label in labels)
    text = f"""{GENERATED.format(tool=TOOL, source=source)}#ifndef KWS_MODEL_SETTINGS_H_
#define KWS_MODEL_SETTINGS_H_

#include <stdint.h>

// Feature front end the model was trained on: "micro" (TFLM micro front end) or "mfcc".
#define KWS_FRONTEND_{settings.frontend.upper()} 1
constexpr char kFrontEnd[] = "{settings.frontend}";

// Audio framing (kws.audio.settings.FeatureSettings).
constexpr int kAudioSampleFrequency = {settings.sample_rate};
constexpr int kClipDurationMs = {settings.clip_ms};
constexpr int kClipSamples = {settings.clip_samples};
constexpr int kFeatureDurationMs = {settings.window_ms};
constexpr int kFeatureDurationSamples = {settings.window_samples};
constexpr int kFeatureStrideMs = {settings.stride_ms};
constexpr int kFeatureStrideSamples = {settings.stride_samples};
constexpr int kFeatureSize = {settings.num_features};  // channels per frame
constexpr int kFeatureCount = {settings.num_frames};  // frames per clip
constexpr int kFeatureElementCount = kFeatureSize * kFeatureCount;

// Model input: feature = front end output * kFeatureScale (as in training), then
// int8 = clamp(round(feature / kInputScale) + kInputZeroPoint, -128, 127).
constexpr float kFeatureScale = {c_float(settings.feature_scale)};
constexpr float kInputScale = {c_float(input_q[0])};
constexpr int kInputZeroPoint = {input_q[1]};
// Model output: int8 logits; logit = (int8 - kOutputZeroPoint) * kOutputScale.
constexpr float kOutputScale = {c_float(output_q[0])};
constexpr int kOutputZeroPoint = {output_q[1]};

constexpr int kCategoryCount = {len(labels)};
constexpr const char* kCategoryLabels[kCategoryCount] = {{{label_list}}};
constexpr int kSilenceIndex = {silence};
constexpr int kUnknownIndex = {unknown};

// Command recognizer (kws.streams.recognize.RecognizerSettings, firmware/recognize_commands.h):
// {rec_source}. kSilenceIndex / kUnknownIndex are the labels it ignores.
constexpr int32_t kInferenceStrideMs = {rec.inference_stride_ms};
constexpr int32_t kAverageWindowMs = {rec.average_window_ms};
constexpr float kDetectionThreshold = {c_float(rec.detection_threshold)};
constexpr int32_t kSuppressionMs = {rec.suppression_ms};
constexpr int kMinimumCount = {rec.minimum_count};

// Smallest tflite-micro tensor arena that ran the model on the export host, reference kernels;
// add a margin for optimized kernels' scratch buffers (see report.json).
constexpr int kTensorArenaSize = {arena};

#endif  // KWS_MODEL_SETTINGS_H_
"""
    (folder / "model_settings.h").write_text(text)


def resolver_method(op: str) -> str:
    """TFLM's MicroMutableOpResolver method for a builtin op: CONV_2D -> AddConv2D."""
    return "Add" + RESOLVER_METHODS.get(
        op, "".join(part.upper() if part[0].isdigit() else part.capitalize() for part in op.lower().split("_"))
    )


# A full-integer model needs only the int8 variant of these kernels: registering it alone keeps
# CMSIS-NN's int4/int16 code out of the firmware (21.6 KB of flash measured, same outputs); with
# the reference kernels it is the generic registration.
INT8_REGISTRATIONS = {
    "CONV_2D": "tflite::Register_CONV_2D_INT8()",
    "DEPTHWISE_CONV_2D": "tflite::Register_DEPTHWISE_CONV_2D_INT8()",
    "AVERAGE_POOL_2D": "tflite::Register_AVERAGE_POOL_2D_INT8()",
    "FULLY_CONNECTED": "tflite::Register_FULLY_CONNECTED_INT8()",
}


def write_model_ops(ops: Sequence[str], folder: Path, source: str, int8: bool = True) -> None:
    """model_ops.h: a MicroMutableOpResolver registering exactly the model's ops (their int8
    kernels only when ``int8``: a full-integer model)."""
    distinct = list(dict.fromkeys(ops))
    registration = INT8_REGISTRATIONS if int8 else {}
    adds = "\n".join(
        f"  TF_LITE_ENSURE_STATUS(resolver.{resolver_method(op)}({registration.get(op, '')}));  // {op}"
        for op in distinct
    )
    (folder / "model_ops.h").write_text(
        f"""{GENERATED.format(tool=TOOL, source=source)}#ifndef KWS_MODEL_OPS_H_
#define KWS_MODEL_OPS_H_

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

constexpr int kNumberOfOps = {len(distinct)};
using ModelOpResolver = tflite::MicroMutableOpResolver<kNumberOfOps>;

// Registers the ops of the int8 model: {", ".join(ops)}.
inline TfLiteStatus RegisterModelOps(ModelOpResolver& resolver) {{
{adds}
  return kTfLiteOk;
}}

#endif  // KWS_MODEL_OPS_H_
"""
    )

"""Export: a briefly trained checkpoint -> ONNX, TFLite float/int8 and the firmware's C sources.
Every runtime agrees with PyTorch, the C sources equal the model, the int8 graph has no layout
glue, errors leave nothing behind, and the reference micro_speech model runs through the same
evaluation code on our front end's features."""

import json
import os
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from datamodules import SpeechCommandsDataModule
from kws.audio.features import MICRO_FEATURE_SCALE, FeatureSettings, build_frontend
from kws.audio.wav import read_wav
from kws.export.c_sources import resolver_method
from kws.export.graph import TFLiteGraph, float_tinyconv, same_padding_taps
from kws.export.int8_reference import Int8Graph
from kws.export.pipeline import export_model, main
from kws.export.tflite import TFLiteRunner, evaluate_tflite, quantize, tflite_ops
from kws.streams.recognize import DEFAULT_RECOGNIZER
from kws.training.checkpoints import CheckpointError, load_checkpoint
from kws.training.module import KWSModule
from tests.helpers import EXPORT_ARTIFACTS, REPO, export_corpus, export_datamodule, run_kws, trained_checkpoint

LABELS = ["silence", "unknown", "yes", "no"]
ARTIFACTS = EXPORT_ARTIFACTS


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return export_corpus(tmp_path_factory.mktemp("corpus") / "synthetic")


@pytest.fixture(scope="module")
def datamodule(corpus) -> SpeechCommandsDataModule:
    return export_datamodule(corpus)


@pytest.fixture(scope="module")
def training_features(datamodule) -> tuple[np.ndarray, np.ndarray]:
    return datamodule.split_features("training")


@pytest.fixture(scope="module")
def checkpoint(datamodule, training_features, tmp_path_factory) -> Path:
    """A KWSModule trained for a few seconds on the training features, saved as `fit` saves it
    (Lightning checkpoint with the data module's hyperparameters)."""
    return trained_checkpoint(
        datamodule, training_features, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", epochs=20, learning_rate=3e-3
    )


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory) -> tuple[Path, dict, str]:
    """`python -m kws export` as a user runs it: (folder, report, console output)."""
    out = tmp_path_factory.mktemp("export") / "tiny"
    proc = run_kws("export", "--ckpt", str(checkpoint), "--out", str(out), "--calibration_clips", "100")
    return out, json.loads((out / "report.json").read_text()), proc.stdout


def _no_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial" in p.name or ".old" in p.name]


def test_export_writes_every_artifact_and_reports(exported):
    out, report, console = exported
    assert {p.name for p in out.iterdir()} == ARTIFACTS | {"arduino"}
    assert [p.name for p in (out / "arduino").glob("*.zip")] == ["kws_yes_no_inferencing.zip"]  # the library, packaged
    assert not _no_leftovers(out.parent)
    assert report["artifacts"] == {name: (out / name).stat().st_size for name in ARTIFACTS - {"report.json"}}
    assert report["calibration"] == {"split": "training", "clips": 100, "augmentation": False}
    assert set(report["accuracy"]) == {"pytorch_float", "onnxruntime", "tflite_float", "tflite_int8", "tflite_micro"}
    assert (
        report["tensor_arena"]["bytes"] > 0
        and report["tensor_arena"]["recorded_total_bytes"] <= report["tensor_arena"]["bytes"]
    )
    for line in (
        "| model_int8.tflite",
        "| TFLite int8 (tflite-micro)",
        "int8 ops: RESHAPE, CONV_2D, RESHAPE, FULLY_CONNECTED",
        "tflite-micro tensor arena:",
    ):
        assert line in console
    assert (
        report["accuracy"]["pytorch_float"] > 0.45
    )  # above chance (a third): it learned, so agreement below means something
    # without a lead-in the test clips have one view, a fresh front-end state, and the table says so
    assert report["accuracy_views"] == {"fresh": report["accuracy"]} and "test, fresh state |" in console


def test_accuracy_table_has_a_column_per_view():
    from kws.export.report import accuracy_table

    views = {
        "lead_in": {"pytorch_float": 0.93, "tflite_micro": 0.9275},
        "fresh": {"pytorch_float": 0.5, "tflite_micro": 0.25},
    }
    lines = accuracy_table(
        {
            "accuracy": views["lead_in"],
            "accuracy_views": views,
            "compared": {"/x/ref.tflite": {"lead_in": 0.55, "fresh": 0.875}},
        }
    )
    assert (
        "test, after a lead-in" in lines[0]
        and "test, fresh state" in lines[0]
        and lines[0].index("lead-in") < lines[0].index("fresh")
    )
    assert [[cell.strip() for cell in line.split("|")[2:4]] for line in lines[2:]] == [
        ["93.00%", "50.00%"],
        ["92.75%", "25.00%"],
        ["55.00%", "87.50%"],
    ]
    assert len({len(line) for line in lines}) == 1  # the columns line up
    assert lines[4].startswith("| ref.tflite")


def test_runtimes_agree(exported, checkpoint, training_features):
    out, report, _ = exported
    assert max(report["max_relative_difference_from_pytorch"].values()) < 1e-4
    assert report["int8_top1_agreement_with_pytorch"] >= 0.9
    # Checked again here, on more clips (training ones: only agreement matters).
    x = training_features[0]
    module = KWSModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    onnx_logits = ort.InferenceSession(str(out / "model.onnx")).run(None, {"features": x})[0]
    np.testing.assert_allclose(onnx_logits, expected, atol=1e-4 * max(1, np.abs(expected).max()))
    model = (out / "model_int8.tflite").read_bytes()
    micro = evaluate_tflite(model, x, runtime="micro", arena_size=report["tensor_arena"]["bytes"])
    for runtime in ("litert", "litert-reference"):
        litert = evaluate_tflite(model, x, runtime=runtime)
        assert np.abs(litert["outputs"].astype(int) - micro["outputs"]).max() <= 1  # requantization rounding at most
        assert (litert["predictions"] == micro["predictions"]).mean() >= 0.99
    assert micro["outputs"].dtype == np.int8
    assert (micro["predictions"] == expected.argmax(1)).mean() >= 0.9


def test_int8_outputs_are_the_numpy_integer_arithmetic(exported, training_features):
    """Each runtime's int8 outputs equal kws.int8_reference bit for bit with its own roundings:
    tflite-micro (the board's runtime) double rounding throughout; the pinned LiteRT wheel single
    rounding (default kernels) or mixed (reference kernels). That is where they differ by one step.
    Inputs: training clips plus random int8 windows, enough for the roundings to disagree."""
    out, report, _ = exported
    double = {"CONV_2D": "double", "FULLY_CONNECTED": "double"}
    assert report["int8_rounding"]["checked"] and all(
        "double" in modes for modes in report["int8_rounding"]["tflite_micro"].values()
    )
    model = (out / "model_int8.tflite").read_bytes()
    scale, zero_point = report["int8"]["input_scale"], report["int8"]["input_zero_point"]
    random = np.random.default_rng(0).integers(-128, 40, size=(1000, training_features[0].shape[1]))
    x = np.concatenate([training_features[0], (random - zero_point) * scale]).astype(
        np.float32
    )  # quantizes back to `random`
    graph = Int8Graph(model)
    inputs = quantize(x, scale, zero_point, np.int8)
    expected = {
        "micro": double,
        "litert": {"CONV_2D": "single", "FULLY_CONNECTED": "single"},
        "litert-reference": {"CONV_2D": "double", "FULLY_CONNECTED": "single"},
    }
    outputs = {}
    for runtime, rounding in expected.items():
        got = evaluate_tflite(model, x, runtime=runtime, arena_size=report["tensor_arena"]["bytes"])["outputs"]
        outputs[runtime] = graph.run(inputs, rounding)
        mismatch = np.argwhere(got != outputs[runtime])
        assert not len(mismatch), (
            f"{runtime}: {len(mismatch)} outputs differ from numpy with {rounding}, first {mismatch[:5].tolist()}"
        )
    # Each runtime's roundings are pinned down: on these inputs the other assignments differ.
    assert (outputs["micro"] != outputs["litert"]).any() and (outputs["micro"] != outputs["litert-reference"]).any()
    assert (outputs["litert"] != outputs["litert-reference"]).any()
    assert (graph.run(inputs, {"CONV_2D": "single", "FULLY_CONNECTED": "double"}) != outputs["litert"]).any()


def test_int8_graph_has_only_the_model_ops(exported):
    out, report, _ = exported
    ops = tflite_ops((out / "model_int8.tflite").read_bytes())
    assert ops == report["ops"] == ["RESHAPE", "CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    assert not {"TRANSPOSE", "PAD"} & set(ops) & set(tflite_ops((out / "model_float.tflite").read_bytes()))
    header = (out / "model_ops.h").read_text()
    assert "tflite::MicroMutableOpResolver<kNumberOfOps>" in header and "constexpr int kNumberOfOps = 3;" in header
    assert re.findall(r"resolver\.(Add\w+)\((.*)\)\);", header) == [
        ("AddReshape", ""),
        ("AddConv2D", "tflite::Register_CONV_2D_INT8()"),
        ("AddFullyConnected", "tflite::Register_FULLY_CONNECTED_INT8()"),
    ]
    assert [resolver_method(op) for op in ("DEPTHWISE_CONV_2D", "MAX_POOL_2D", "SOFTMAX", "BATCH_MATMUL")] == [
        "AddDepthwiseConv2D",
        "AddMaxPool2D",
        "AddSoftmax",
        "AddBatchMatMul",
    ]


def test_c_array_is_the_int8_model(exported):
    out, _, _ = exported
    source = (out / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char g_model[] = {" in source
    body = source.split("g_model[] = {")[1].split("};")[0]
    data = bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", body))
    assert data == (out / "model_int8.tflite").read_bytes()
    assert int(re.search(r"const unsigned int g_model_len = (\d+);", source).group(1)) == len(data)
    assert "extern const unsigned char g_model[];" in (out / "model_data.h").read_text()


def test_model_settings_match_model_and_features(exported):
    out, report, _ = exported
    header = (out / "model_settings.h").read_text()
    values = dict(re.findall(r"constexpr (?:int32_t|int|float) (\w+) = ([^;]+);", header))
    number = lambda name: float(values[name].rstrip("f"))  # noqa: E731
    details = TFLiteRunner((out / "model_int8.tflite").read_bytes())
    scale, zero_point = details.input_quantization
    assert np.float32(number("kInputScale")) == np.float32(scale) and number("kInputZeroPoint") == zero_point
    assert np.float32(number("kOutputScale")) == np.float32(details.output_quantization[0])
    assert np.float32(number("kFeatureScale")) == np.float32(MICRO_FEATURE_SCALE)
    settings = FeatureSettings()
    expected = {
        "kAudioSampleFrequency": settings.sample_rate,
        "kClipSamples": settings.clip_samples,
        "kFeatureDurationMs": settings.window_ms,
        "kFeatureDurationSamples": settings.window_samples,
        "kFeatureStrideMs": settings.stride_ms,
        "kFeatureStrideSamples": settings.stride_samples,
        "kFeatureSize": settings.num_features,
        "kFeatureCount": settings.num_frames,
        "kCategoryCount": 4,
        "kSilenceIndex": 0,
        "kUnknownIndex": 1,
        "kTensorArenaSize": report["tensor_arena"]["bytes"],
    }
    assert {name: number(name) for name in expected} == expected
    assert 'constexpr char kFrontEnd[] = "micro";' in header
    # The recognizer the export calibrated on the validation stream (else micro_speech's defaults),
    # the same in report.json and model_settings.h, its inference stride included.
    assert "stream_test" in report and set(report["stream_test"]["calibrated"]) == {"2", "5", "10"}
    recognizer = report["recognizer"]["settings"]
    if report["recognizer"]["calibrated_on"] is None:
        assert recognizer == DEFAULT_RECOGNIZER.to_dict()
    assert np.float32(number("kDetectionThreshold")) == np.float32(recognizer["detection_threshold"])
    assert [number(n) for n in ("kAverageWindowMs", "kSuppressionMs", "kMinimumCount", "kInferenceStrideMs")] == [
        recognizer[k] for k in ("average_window_ms", "suppression_ms", "minimum_count", "inference_stride_ms")
    ]
    assert recognizer["inference_stride_ms"] == 100 and {"silence", "unknown"} <= set(recognizer["ignore"])
    # The front end's tables beside it: the default settings' micro tables, byte for byte the
    # committed ones that setup.py compiles.
    default = REPO / "firmware" / "default_tables" / "micro_frontend_tables.h"
    assert (out / "micro_frontend_tables.h").read_text() == default.read_text()
    assert re.findall(r'"(\w+)"', header.split("kCategoryLabels")[1].split(";")[0]) == LABELS


def test_stream_test_writes_its_calibration_into_the_export(exported, tmp_path):
    """`stream-test --export` scores the export's int8 model and makes the recognizer it calibrates
    the export's own: model_settings.h and report.json both; a folder that is not an export is refused."""
    import shutil

    folder = tmp_path / "export"
    shutil.copytree(exported[0], folder)
    before = (folder / "model_settings.h").read_text()
    run_kws(
        "stream-test",
        "--export",
        str(folder),
        "--budgets",
        "2",
        "--calibrate_fa_per_hour",
        "100000",
        "--out",
        str(tmp_path / "st"),
    )
    report = json.loads((folder / "report.json").read_text())
    recognizer = report["recognizer"]
    assert recognizer["max_fa_per_hour"] == 100000 and recognizer["model"] == "int8 (tflite-micro)"
    assert set(report["stream_test"]["calibrated"]) == {"2", "100000"}
    header = (folder / "model_settings.h").read_text()
    values = dict(re.findall(r"constexpr \w+ (k\w+) = ([-\d.e+f]+);", header))
    threshold = np.float32(recognizer["settings"]["detection_threshold"])
    assert np.float32(values["kDetectionThreshold"].rstrip("f")) == threshold
    assert int(values["kAverageWindowMs"]) == recognizer["settings"]["average_window_ms"]
    # Only the recognizer's part of the header changed; the rest of the folder is the export's.
    changed = [line for line in header.splitlines() if line not in before.splitlines()]
    recognizer_lines = (
        "constexpr int32_t kAverageWindowMs",
        "constexpr float kDetectionThreshold",
        "constexpr int32_t kSuppressionMs",
        "constexpr int kMinimumCount",
        "// calibrated",
        "// micro_speech",
    )
    assert all(line.startswith(recognizer_lines) for line in changed), changed
    assert report["artifacts"]["model_settings.h"] == len(header.encode())
    assert (folder / "model_int8.tflite").read_bytes() == (exported[0] / "model_int8.tflite").read_bytes()
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]
    refused = run_kws("stream-test", "--export", str(tmp_path / "st"), "--out", str(tmp_path / "st2"), check=False)
    assert refused.returncode == 2 and "is not an export folder" in refused.stderr


def test_rewritten_graph_is_exact():
    """The onnx2tf-friendly rewrite (zero taps for 'SAME', channel-last flatten) computes TinyConv."""
    assert same_padding_taps(49, 10, 2, 5) == 1 and same_padding_taps(40, 8, 2, 3) == 0
    assert same_padding_taps(50, 3, 1, 0) is None  # 'SAME' would change the output length
    torch.manual_seed(0)
    model = KWSModule().model.eval()
    x = torch.rand(5, 1960) * 26
    with torch.no_grad():
        torch.testing.assert_close(TFLiteGraph(float_tinyconv(model))(x), model(x), atol=1e-4, rtol=1e-5)


def test_reference_model_through_the_same_evaluation(micro_speech_dir):
    """micro_speech's own int8 model, fed our micro front end's features (quantized with its input
    scale and zero point), hears yes as yes, no as no and the silence and noise clips as silence:
    our features are what it was trained on."""
    frontend = build_frontend(FeatureSettings())
    clips = {
        name: read_wav(micro_speech_dir / f"{name}_1000ms.wav", 16000)[0] for name in ("yes", "no", "silence", "noise")
    }
    with torch.no_grad():
        features = frontend(torch.from_numpy(np.stack(list(clips.values())))).reshape(len(clips), -1).numpy()
    reference = micro_speech_dir / "micro_speech_quantized.tflite"
    runner = TFLiteRunner(reference.read_bytes())
    assert runner.input_quantization == pytest.approx((0.10171568, -128))
    labels = np.array([LABELS.index(name) for name in ("yes", "no", "silence", "silence")])
    for runtime in ("litert", "micro"):
        result = evaluate_tflite(reference, features, labels, runtime=runtime)
        assert [LABELS[i] for i in result["predictions"]] == ["yes", "no", "silence", "silence"] and result[
            "accuracy"
        ] == 1.0


def _fails_cleanly(capsys, out: Path, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(out), *argv])
    assert exit_info.value.code == 2
    assert not out.exists() and not (out.parent.is_dir() and _no_leftovers(out.parent))
    return capsys.readouterr().err


def test_missing_checkpoint(tmp_path, capsys):
    err = _fails_cleanly(capsys, tmp_path / "out", "--ckpt", str(tmp_path / "nope.ckpt"))
    assert f"error: no checkpoint at {tmp_path / 'nope.ckpt'}" in err


def test_checkpoint_of_another_architecture(tmp_path, capsys, checkpoint):
    plain = tmp_path / "state_dict.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), plain)
    assert "is not a KWSModule checkpoint (a plain state_dict)" in _fails_cleanly(
        capsys, tmp_path / "out", "--ckpt", str(plain)
    )
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"hidden": 3}}, other)
    assert "is not a KWSModule checkpoint (no KWSModule hyperparameters" in _fails_cleanly(
        capsys, tmp_path / "out", "--ckpt", str(other)
    )
    # KWSModule hyperparameters, but weights of another shape
    wrong = torch.load(checkpoint, map_location="cpu", weights_only=False)
    wrong["state_dict"]["model.fc.weight"] = torch.zeros(4, 10)
    torch.save(wrong, tmp_path / "wrong.ckpt")
    assert "does not fit KWSModule's TinyConv" in _fails_cleanly(
        capsys, tmp_path / "out", "--ckpt", str(tmp_path / "wrong.ckpt")
    )


def test_config_overrides_the_data_settings(checkpoint, corpus, tmp_path, capsys):
    config = tmp_path / "conf.yaml"
    config.write_text(f"data:\n  data_dir: {corpus}\n  batch_size: 16\n")
    _, dm = load_checkpoint(checkpoint, config)
    assert dm.hparams.batch_size == 16 and dm.data_dir == corpus
    config.write_text("data:\n  features:\n    num_features: 32\n")
    with pytest.raises(CheckpointError, match=r"was trained with input shape \(49, 40\) \(this run: \(49, 32\)\)"):
        load_checkpoint(checkpoint, config)
    config.write_text("data:\n  num_features: 32\n")  # a flat key of before the groups
    with pytest.raises(CheckpointError, match=r"data.num_features is now data.features.num_features"):
        load_checkpoint(checkpoint, config)
    config.write_text(f"data:\n  data_dir: {tmp_path / 'gone'}\n")
    err = _fails_cleanly(capsys, tmp_path / "out", "--ckpt", str(checkpoint), "--config", str(config))
    assert f"data_dir {tmp_path / 'gone'} does not exist" in err and "point --config's data.data_dir at it" in err


def test_unwritable_output_folder(tmp_path, capsys, checkpoint):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    err = _fails_cleanly(capsys, blocker / "out", "--ckpt", str(checkpoint))
    assert f"error: cannot write the export to {blocker / 'out'}" in err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert "cannot write the export" in _fails_cleanly(capsys, locked / "out", "--ckpt", str(checkpoint))
    user_folder = tmp_path / "mine"
    (user_folder / "notes.txt").parent.mkdir()
    (user_folder / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        main(["--ckpt", str(checkpoint), "--out", str(user_folder)])
    assert (
        "is not an earlier export" in capsys.readouterr().err and (user_folder / "notes.txt").read_text() == "keep me"
    )


def test_failed_export_keeps_the_previous_one(tmp_path, checkpoint, datamodule, monkeypatch):
    import kws.export.pipeline

    out = tmp_path / "export"
    out.mkdir()
    (out / "report.json").write_text("{}")  # an earlier export
    module = KWSModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()

    def broken(model, path):
        path.write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(
        type(datamodule), "split_features", lambda *a, **k: (np.zeros((2, 1960), np.float32), np.zeros(2, np.int64))
    )
    monkeypatch.setattr(kws.export.pipeline, "export_onnx", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_model(module, datamodule, out, source="test", log=lambda _: None)
    assert [p.name for p in out.iterdir()] == ["report.json"] and (out / "report.json").read_text() == "{}"
    assert not _no_leftovers(tmp_path)

"""Export of a DS-CNN (model.arch ds_cnn): BatchNorm folded exactly, ONNX Runtime and TFLite float
equal to PyTorch, an int8 graph of ops tflite-micro and CMSIS-NN both have with no layout glue,
LiteRT and tflite-micro int8 outputs within a rounding step (each reproduced bit for bit by the
numpy int8 reference), the C array equal to the model, and -- where the Arm toolchain and QEMU
are installed -- the firmware computing what the host computes, within the flash and RAM budget."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from datamodules import SpeechCommandsDataModule
from kws.compression.pruning import add_masks, get_mask
from kws.compression.quantization import wrap_fake_quant
from kws.export import ExportError
from kws.export.graph import DSCNNGraph, plain_float_model, tflite_graph
from kws.export.int8_reference import Int8Graph
from kws.export.pipeline import export_checkpoint
from kws.export.tflite import evaluate_tflite, quantize, tflite_ops
from kws.models import DSCNN
from kws.training.module import KWSModule
from tests.helpers import REPO, trained_checkpoint

BLOCK = ["DEPTHWISE_CONV_2D", "CONV_2D"]
OPS = ["RESHAPE", "CONV_2D", *BLOCK * 4, "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED"]
# Ops with int8 kernels in both tflite-micro's reference kernels and CMSIS-NN.
BOARD_OPS = {"RESHAPE", "CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MEAN", "FULLY_CONNECTED"}


def random_batch_norm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine terms far from BatchNorm's identity start, so folding shows."""
    generator = torch.Generator().manual_seed(seed)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        n = bn.num_features
        bn.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
        bn.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.3)
        bn.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
        bn.bias.data.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
    return model


@pytest.fixture(scope="module")
def datamodule(tiny_corpus) -> SpeechCommandsDataModule:
    dm = SpeechCommandsDataModule(data_dir=str(tiny_corpus), batch_size=64)
    dm.prepare_data()
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def training_features(datamodule) -> tuple[np.ndarray, np.ndarray]:
    return datamodule.split_features("training")


@pytest.fixture(scope="module")
def checkpoint(datamodule, training_features, tmp_path_factory) -> Path:
    """A DS-CNN KWSModule trained for a few epochs on the training features, saved as `fit` saves it."""
    return trained_checkpoint(
        datamodule,
        training_features,
        tmp_path_factory.mktemp("ckpt") / "ds_cnn.ckpt",
        epochs=6,
        arch="ds_cnn",
        learning_rate=1e-2,
    )


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory) -> tuple[Path, dict, list[str]]:
    """(folder, report, console lines) of the export (no stream test: the recognizer keeps its defaults)."""
    out, lines = tmp_path_factory.mktemp("export") / "ds_cnn", []
    report = export_checkpoint(checkpoint, out, calibration_clips=100, recognizer_fa_per_hour=None, log=lines.append)
    return out, report, lines


def test_float_model_folds_batch_norm_exactly():
    """The export's float model (BN folded, QAT wrappers stripped, masks applied) and its
    onnx2tf-friendly rewrite compute the DS-CNN's eval-mode outputs."""
    torch.manual_seed(0)
    model = random_batch_norm(DSCNN()).eval()
    x = torch.rand(6, 1960) * 26
    plain = plain_float_model(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(plain(x), expected, atol=1e-4, rtol=1e-5)
        graph = tflite_graph(plain)
        assert isinstance(graph, DSCNNGraph) and graph.same_padding_convs == [True] * 9
        assert graph.convs[0].kernel_size == (11, 8)  # one zero tap: TensorFlow 'SAME' pads as PyTorch's 5
        torch.testing.assert_close(graph(x), expected, atol=1e-4, rtol=1e-5)
        # A pruned, fake-quantized model exports its masked float weights.
        add_masks(model, ["blocks.1.pointwise.weight"])
        get_mask(model, "blocks.1.pointwise.weight")[:, ::2] = False
        masked = model(x)
        wrap_fake_quant(model)
        torch.testing.assert_close(plain_float_model(model.eval())(x), masked, atol=1e-4, rtol=1e-5)
    with pytest.raises(ExportError, match="BatchNorm folded"):
        DSCNNGraph(model)
    with pytest.raises(ExportError, match="export supports TinyConv and DSCNN"):
        plain_float_model(nn.Linear(1960, 4))


def test_int8_graph_has_only_board_ops(exported):
    out, report, lines = exported
    ops = tflite_ops((out / "model_int8.tflite").read_bytes())
    assert ops == report["ops"] == OPS and set(ops) <= BOARD_OPS
    assert not {"TRANSPOSE", "PAD"} & set(report["float_ops"])
    header = (out / "model_ops.h").read_text()
    assert "constexpr int kNumberOfOps = 5;" in header
    assert re.findall(r"resolver\.(Add\w+)\((.*)\)\);", header) == [
        ("AddReshape", ""),
        ("AddConv2D", "tflite::Register_CONV_2D_INT8()"),
        ("AddDepthwiseConv2D", "tflite::Register_DEPTHWISE_CONV_2D_INT8()"),
        ("AddAveragePool2D", "tflite::Register_AVERAGE_POOL_2D_INT8()"),
        ("AddFullyConnected", "tflite::Register_FULLY_CONNECTED_INT8()"),
    ]
    assert f"int8 ops: {', '.join(OPS)}" in "\n".join(lines)
    assert not report["notes"]


def test_runtimes_agree(exported, checkpoint, training_features):
    out, report, _ = exported
    assert max(report["max_relative_difference_from_pytorch"].values()) < 1e-4
    # Agreement on the clips it was trained on (the tiny corpus's test split is 17 clips of unseen voices).
    x, y = training_features
    module = KWSModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    assert isinstance(module.model, DSCNN)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    assert (expected.argmax(1) == y).mean() > 0.6  # it learned (chance: a third), so agreement means something
    onnx_logits = ort.InferenceSession(str(out / "model.onnx")).run(None, {"features": x})[0]
    np.testing.assert_allclose(onnx_logits, expected, atol=1e-4 * max(1, np.abs(expected).max()))
    model = (out / "model_int8.tflite").read_bytes()
    micro = evaluate_tflite(model, x, runtime="micro", arena_size=report["tensor_arena"]["bytes"])
    for runtime in ("litert", "litert-reference"):
        litert = evaluate_tflite(model, x, runtime=runtime)
        assert np.abs(litert["outputs"].astype(int) - micro["outputs"]).max() <= 1  # requantization rounding at most
        assert (litert["predictions"] == micro["predictions"]).mean() >= 0.99
    assert (micro["predictions"] == expected.argmax(1)).mean() >= 0.9


def test_int8_outputs_are_the_numpy_integer_arithmetic(exported, training_features):
    """tflite-micro is double rounding in every requantizing op; LiteRT's reference kernels double
    in the convolutions (depthwise too) and single in FULLY_CONNECTED, as for TinyConv; LiteRT's
    default (XNNPACK) kernels requantize the convolutions in float32 ("fp32"), which TFLite's two
    roundings do not reproduce. AVERAGE_POOL_2D has no rounding choice."""
    out, report, lines = exported
    assert report["int8_rounding"]["checked"]
    assert report["int8_rounding"]["tflite_micro"]["DEPTHWISE_CONV_2D"] == ["double"]
    assert all(
        report["int8_rounding"][name] for name in ("tflite_micro", "litert", "litert_reference_kernels")
    )  # each explained
    assert "\nnumpy int8 reference: tflite-micro = CONV_2D double" in "\n".join(lines)
    model = (out / "model_int8.tflite").read_bytes()
    scale, zero_point = report["int8"]["input_scale"], report["int8"]["input_zero_point"]
    random = np.random.default_rng(0).integers(-128, 60, size=(300, training_features[0].shape[1]))
    x = np.concatenate([training_features[0][:300], (random - zero_point) * scale]).astype(np.float32)
    inputs = quantize(x, scale, zero_point, np.int8)
    graph = Int8Graph(model)
    assert graph.requantizing_ops == ["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"]
    double = dict.fromkeys(graph.requantizing_ops, "double")
    xnnpack = {"CONV_2D": "fp32", "DEPTHWISE_CONV_2D": "fp32", "FULLY_CONNECTED": "single"}
    expected = {"micro": double, "litert": xnnpack, "litert-reference": {**double, "FULLY_CONNECTED": "single"}}
    for runtime, rounding in expected.items():
        got = evaluate_tflite(model, x, runtime=runtime, arena_size=report["tensor_arena"]["bytes"])["outputs"]
        mismatch = np.argwhere(got != graph.run(inputs, rounding))
        assert not len(mismatch), (
            f"{runtime}: {len(mismatch)} outputs differ from numpy with {rounding}, first {mismatch[:5].tolist()}"
        )


def test_c_array_is_the_int8_model(exported):
    out, report, _ = exported
    source = (out / "model_data.cc").read_text()
    body = source.split("g_model[] = {")[1].split("};")[0]
    data = bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", body))
    assert data == (out / "model_int8.tflite").read_bytes()
    assert int(re.search(r"const unsigned int g_model_len = (\d+);", source).group(1)) == len(data)
    settings = (out / "model_settings.h").read_text()
    assert f"constexpr int kTensorArenaSize = {report['tensor_arena']['bytes']};" in settings


FIRMWARE_TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-g++", "qemu-system-arm", "make")
TFLM_DIR = REPO.parent / "shared" / "third_party" / "tflite-micro"


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in FIRMWARE_TOOLS) or not (TFLM_DIR / "cmsis-nn").is_dir(),
    reason="needs the Arm toolchain, QEMU and a TFLM tree (tests/firmware/test_emulator.py says how)",
)
def test_the_firmware_runs_the_ds_cnn(exported, datamodule, tmp_path):
    """Both kernel sets in QEMU: int8 outputs equal the host's on a recording and on every test
    clip, and the sketch (its arena sized for the DS-CNN) fits 256 KB of flash and 64 KB of RAM."""
    from kws.audio.wav import write_wav
    from kws.deploy.firmware_sim import simulate

    out, _, _ = exported
    test_split = datamodule.splits["testing"]
    audio, _ = test_split[list(range(len(test_split)))[:10]]
    quiet = np.zeros((len(audio), 8000), np.int16)
    write_wav(
        tmp_path / "recording.wav",
        np.concatenate([np.concatenate([a, q]) for a, q in zip(audio.numpy(), quiet)]),
        16000,
    )
    results = simulate(out, tmp_path / "recording.wav", log=lambda line: None)
    for kernels, entry in results["kernels"].items():
        assert entry["stream"]["identical"] and entry["stream"]["detections_identical"], (kernels, entry["stream"])
        assert entry["clips"]["identical"], (kernels, entry["clips"])
        assert entry["footprint"]["fits"], (kernels, json.dumps(entry["footprint"]))

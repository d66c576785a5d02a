"""The int8 export of a QAT-trained TinyConv is the model QAT trained: its scales, zero points and
integer weights (8 and 4 bits), pruning's zeros, and outputs equal to the fake-quantized model in
tflite-micro; what TFLite cannot hold is refused before training; a non-QAT export is untouched."""

import json

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import kws.export.pipeline as pipeline
from callbacks import Export, Pruning, QuantizationAwareTraining
from datamodules import SpeechCommandsDataModule
from datamodules.synthetic import generate_corpus
from kws.compression.quantization import fake_quantize, quantizers, wrap_fake_quant
from kws.export.qat_int8 import mapping_problem
from kws.export.qat_verify import output_check
from kws.export.tflite import parse_model
from kws.models import DSCNN, TinyConv
from kws.training.module import KWSModule

QUIET = dict(
    logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu"
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "synthetic"
    return generate_corpus(
        root,
        num_speakers=20,
        clips_per_word=150,
        unknown_clips_per_word=15,
        unknown_words=("cat", "dog", "bed", "bird", "go"),
        progress=False,
    )


@pytest.fixture(scope="module")
def datamodule(corpus) -> SpeechCommandsDataModule:
    dm = SpeechCommandsDataModule(data_dir=str(corpus), batch_size=64)
    dm.prepare_data()
    dm.setup()
    return dm


def fit_and_export(datamodule, root, qat: QuantizationAwareTraining, prune: Pruning | None = None, epochs: int = 5):
    """A real fit through the Lightning callbacks, exported by callbacks.Export at its end."""
    torch.manual_seed(0)
    module = KWSModule(labels=datamodule.labels, input_shape=datamodule.input_shape, dropout=0.0, learning_rate=3e-3)
    export = Export(out_dir=str(root / "export"), calibration_clips=100)
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=[c for c in (prune, qat, export) if c is not None],
        default_root_dir=root,
        **QUIET,
    )
    trainer.fit(module, datamodule=datamodule)
    assert export.error is None, export.error
    report = json.loads((root / "export" / "report.json").read_text())
    return module, report, (root / "export" / "model_int8.tflite").read_bytes()


@pytest.fixture(scope="module")
def qat8(datamodule, tmp_path_factory):
    prune = Pruning(amount=0.5, method="unstructured", schedule="one_shot", start_epoch=1)
    root = tmp_path_factory.mktemp("qat8")
    module, report, model = fit_and_export(datamodule, root, QuantizationAwareTraining(), prune)
    return module, report, model, prune


@pytest.fixture(scope="module")
def qat4(datamodule, tmp_path_factory):
    return fit_and_export(datamodule, tmp_path_factory.mktemp("qat4"), QuantizationAwareTraining(weight_bits=4))


def tensors_of(model: bytes) -> dict[str, tuple]:
    """(input, output, weight, bias) tensors of CONV_2D and FULLY_CONNECTED, and the buffers."""
    parsed, names = parse_model(model)
    graph = parsed.subgraphs[0]
    ops = {name: op for name, op in zip(names[0], graph.operators)}
    indices = lambda op: (op.inputs[0], op.outputs[0], op.inputs[1], op.inputs[2])  # noqa: E731
    return {
        layer: [graph.tensors[i] for i in indices(ops[op])]
        for layer, op in (("conv", "CONV_2D"), ("fc", "FULLY_CONNECTED"))
    }, parsed


def assert_quantization_is_qat(module, model: bytes) -> None:
    """Every scale and zero point of the int8 file against the wrappers, computed here anew."""
    tensors, parsed = tensors_of(model)
    wrappers = quantizers(module.model)
    f32 = lambda t: np.asarray(t.cpu(), np.float32).reshape(-1)  # noqa: E731
    outputs = {"conv": wrappers["fc"], "fc": None}
    for name, (data, out, weight, bias) in tensors.items():
        q = wrappers[name]
        assert np.array_equal(np.float32(data.quantization.scale), f32(q.act_scale))
        assert list(data.quantization.zeroPoint) == [int(q.act_zero_point) - 128]
        follow = outputs[name]
        scale, zero = (follow.act_scale, follow.act_zero_point) if follow else (q.out_scale, q.out_zero_point)
        assert np.array_equal(np.float32(out.quantization.scale), f32(scale))
        assert list(out.quantization.zeroPoint) == [int(zero) - 128]
        w_scale, w_zero = q.weight_qparams()
        assert np.array_equal(np.float32(weight.quantization.scale), f32(w_scale))
        assert not any(weight.quantization.zeroPoint)
        assert np.array_equal(np.float32(bias.quantization.scale), f32(q.act_scale * w_scale))
    graph = parsed.subgraphs[0]
    first = graph.tensors[graph.inputs[0]].quantization
    assert np.array_equal(np.float32(first.scale), f32(wrappers["conv"].act_scale))


def test_qat_8bit_scales_are_qats(qat8):
    module, report, model, _ = qat8
    assert_quantization_is_qat(module, model)
    assert report["qat_int8"]["scales"]["equal"]
    assert any("holds QAT's own scales" in note for note in report["notes"])


def check_outputs(o: dict, equal: float) -> None:
    assert o["top1_agreement"] >= 0.99 and o["max_difference"] <= 1
    # one rounding of the exact value (the numpy int8 reference) is the fake-quant model's output; tflite-micro
    # rounds twice (kws.export.int8_reference), which moves an output by one step where they part
    assert o["reference_single_rounding_equal"] >= 0.999 and o["micro_is_reference_double_rounding"]
    assert o["outputs_equal"] >= equal


def test_qat_8bit_outputs_are_the_fake_quant_models(qat8, datamodule):
    module, report, model, _ = qat8
    check_outputs(report["qat_int8"]["outputs"], 0.98)
    # again on 400 training clips (only agreement matters)
    clips = datamodule.split_features("training", clips=400)[0]
    more = output_check(module.model, model, clips, report["tensor_arena"]["bytes"])
    check_outputs(more, 0.98)


def test_pruned_zeros_are_exact_and_reported(qat8):
    module, report, model, prune = qat8
    final = prune.sparsity_report(module.model)
    weights = {w["layer"]: w for w in report["int8_weights"]}
    for name in ("conv", "fc"):
        assert weights[name]["float_sparsity"] == pytest.approx(final[f"pruning/sparsity/{name}"], abs=1e-7)
        assert weights[name]["sparsity"] >= weights[name]["float_sparsity"] >= 0.49
    tensors, parsed = tensors_of(model)
    weight = tensors["conv"][2]
    conv = np.frombuffer(bytes(parsed.buffers[weight.buffer].data), np.int8).reshape(weight.shape)
    float_conv = module.model.conv.layer.weight.detach().permute(0, 2, 3, 1).numpy()  # OIHW -> OHWI
    kh, kw = float_conv.shape[1:3]
    assert (conv[:, :kh, :kw, :][float_conv == 0] == 0).all()
    assert weights["conv"]["sparsity"] == pytest.approx(float((conv[:, :kh, :kw, :] == 0).mean()))
    # beyond the pruned zeros, the int8 zeros are the weights QAT itself rounds to 0: the trained model's
    for name in ("conv", "fc"):
        q = quantizers(module.model)[name]
        scale, zero_point = q.weight_qparams()
        fq = fake_quantize(q.layer.weight.detach(), scale, zero_point, 8, "symmetric", 0)
        assert weights[name]["sparsity"] == pytest.approx(float((fq == 0).float().mean()), abs=1e-7)


def test_4bit_weights_take_only_qat_levels(qat4):
    module, report, model = qat4
    assert_quantization_is_qat(module, model)
    for w in report["int8_weights"]:
        assert max(w["levels_per_channel"]) <= 15 and -7 <= w["range"][0] and w["range"][1] <= 7
    tensors, parsed = tensors_of(model)
    for name in ("conv", "fc"):
        values = np.frombuffer(bytes(parsed.buffers[tensors[name][2].buffer].data), np.int8)
        assert np.abs(values).max() <= 7
    check_outputs(report["qat_int8"]["outputs"], 0.9)


def test_non_qat_export_is_untouched(datamodule, tmp_path, monkeypatch):
    """The QAT path never runs for a plain model: model_int8.tflite is onnx2tf's bytes."""
    converted = {}
    convert = pipeline.convert_tflite

    def recording(*args):
        float_model, converted["int8"] = convert(*args)
        return float_model, converted["int8"]

    def never(*args):
        raise AssertionError("the QAT rewrite ran for a model without QAT")

    monkeypatch.setattr(pipeline, "convert_tflite", recording)
    monkeypatch.setattr(pipeline, "qat_int8_model", never)
    torch.manual_seed(0)
    module = KWSModule(labels=datamodule.labels, input_shape=datamodule.input_shape).eval()
    report = pipeline.export_model(
        module,
        datamodule,
        tmp_path / "plain",
        "test",
        calibration_clips=50,
        log=lambda _: None,
        recognizer_fa_per_hour=None,
    )
    assert (tmp_path / "plain" / "model_int8.tflite").read_bytes() == converted["int8"]
    assert "qat_int8" not in report and len(report["int8_weights"]) == 2


def refused(module, qat) -> str:
    trainer = L.Trainer(max_epochs=1, callbacks=[qat, Export()], **QUIET)
    loader = DataLoader(TensorDataset(torch.rand(8, 1960), torch.randint(0, 4, (8,))), batch_size=4)
    with pytest.raises(ValueError) as error:
        trainer.fit(module, loader)
    return str(error.value)


@pytest.mark.parametrize(
    "options, fix",
    [
        ({"mode": "asymmetric"}, "set mode: symmetric"),
        ({"activation_bits": 4}, "set activation_bits: 8"),
        ({"activation_mode": "symmetric"}, "set activation_mode: asymmetric"),
        ({"layers": ["conv"]}, "set layers: null"),
        ({"quantize_output": False}, "set quantize_output: true"),
    ],
)
def test_refused_before_training(options, fix):
    module = KWSModule()
    assert fix in refused(module, QuantizationAwareTraining(**options))
    assert not quantizers(module.model)  # nothing trained


def test_ds_cnn_with_qat_and_export_is_refused():
    message = refused(KWSModule(arch="ds_cnn"), QuantizationAwareTraining())
    assert "ds_cnn" in message and "--model.arch tiny_conv" in message


def test_qat_alone_is_not_refused():
    trainer = L.Trainer(max_epochs=1, callbacks=[QuantizationAwareTraining(mode="asymmetric")], **QUIET)
    trainer.fit(KWSModule(), DataLoader(TensorDataset(torch.rand(8, 1960), torch.randint(0, 4, (8,))), batch_size=4))


def test_models_qat_cannot_map_keep_the_calibration():
    """An old checkpoint's quantization (symmetric activations, no output range) or a DS-CNN: the
    export calibrates as before and says why (mapping_problem is the note's reason)."""
    x = torch.rand(16, 1960)
    old = wrap_fake_quant(TinyConv(dropout=0.0), per_channel=True)
    old.train()(x)
    assert "set activation_mode: asymmetric" in mapping_problem(old)
    dscnn = wrap_fake_quant(DSCNN(), per_channel=True, activation_mode="asymmetric", quantize_output=True)
    dscnn.train()(x)
    assert "TinyConv only" in mapping_problem(dscnn)
    exact = wrap_fake_quant(TinyConv(dropout=0.0), per_channel=True, activation_mode="asymmetric", quantize_output=True)
    assert "never observed" in mapping_problem(exact)
    exact.train()(x)
    assert mapping_problem(exact) is None


def test_old_qat_checkpoint_keeps_the_calibration(datamodule, tmp_path, monkeypatch):
    """A QAT model TFLite cannot hold exactly (here symmetric activations, the callback's old
    default): `python -m kws export`'s path calibrates as before, onnx2tf's bytes, and says why."""
    converted = {}
    convert = pipeline.convert_tflite

    def recording(*args):
        float_model, converted["int8"] = convert(*args)
        return float_model, converted["int8"]

    monkeypatch.setattr(pipeline, "convert_tflite", recording)
    torch.manual_seed(0)
    module = KWSModule(labels=datamodule.labels, input_shape=datamodule.input_shape)
    wrap_fake_quant(module.model, per_channel=True)
    module.model.train()(torch.from_numpy(datamodule.split_features("training", clips=64)[0]))
    module.eval()
    report = pipeline.export_model(
        module,
        datamodule,
        tmp_path / "old",
        "test",
        calibration_clips=50,
        log=lambda _: None,
        recognizer_fa_per_hour=None,
    )
    assert (tmp_path / "old" / "model_int8.tflite").read_bytes() == converted["int8"]
    assert "qat_int8" not in report
    assert any("cannot hold exactly" in n and "set activation_mode: asymmetric" in n for n in report["notes"])

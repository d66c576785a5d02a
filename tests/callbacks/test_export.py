"""callbacks.Export: the export at the end of a real fit with QAT, and its warning without a data
module (the export itself is in tests/export)."""

import json

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from callbacks import Export, QuantizationAwareTraining
from kws.training.module import KWSModule
from tests.helpers import EXPORT_ARTIFACTS as ARTIFACTS
from tests.helpers import export_corpus, export_datamodule


@pytest.fixture(scope="module")
def datamodule(tmp_path_factory):
    return export_datamodule(export_corpus(tmp_path_factory.mktemp("corpus") / "synthetic"))


def _no_leftovers(folder):
    return [p.name for p in folder.iterdir() if ".partial" in p.name or ".old" in p.name]


def test_callback_exports_the_qat_model_at_fit_end(datamodule, tmp_path):
    """callbacks.Export during a real fit with QAT (its defaults, TFLite's scheme): the in-memory
    fake-quantized model is exported with QAT's own quantization (tests/export/test_export_qat.py
    checks it), the report shows the QAT accuracy next to the int8 one and says so."""
    torch.manual_seed(0)
    module = KWSModule(labels=datamodule.labels, input_shape=datamodule.input_shape)
    export = Export(calibration_clips=100)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
        callbacks=[QuantizationAwareTraining(start_epoch=0), export],
    )
    trainer.fit(module, datamodule=datamodule)
    assert export.error is None
    out = tmp_path / "export"
    report = json.loads((out / "report.json").read_text())
    assert {p.name for p in out.iterdir()} == ARTIFACTS | {"arduino"} and not _no_leftovers(tmp_path)
    assert set(report["accuracy"]) == {
        "pytorch_float",
        "pytorch_qat",
        "onnxruntime",
        "tflite_float",
        "tflite_int8",
        "tflite_micro",
    }
    assert any("QAT-trained model: the int8 model holds QAT's own scales" in note for note in report["notes"])
    assert report["qat_int8"]["scales"]["equal"]
    assert set(report["qat_input_ranges"]) == {"conv", "fc"}
    assert report["source"] == "the model at the end of fit (1 epochs)"


def test_callback_without_data_module_warns(tmp_path):
    module = KWSModule()
    export = Export()
    x, y = torch.rand(8, 1960), torch.randint(0, 4, (8,))
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
        callbacks=[export],
    )
    with pytest.warns(UserWarning, match="needs the fit's data module"):
        trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=4))
    assert not (tmp_path / "export").exists()

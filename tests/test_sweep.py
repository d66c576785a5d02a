"""The sweep's grid: every point is a valid callback configuration, and the plots draw."""
import importlib

import pytest

from kws.sweep import STUDIES, plot, study_points


def instantiate(callback: dict):
    module, _, name = callback["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**callback["init_args"])


@pytest.mark.parametrize("study", STUDIES)
def test_every_point_is_a_valid_callback(study):
    points = study_points(study, epochs=8)
    expected = {"bits": 6, "sparsity": 20, "norms": 21, "structured": 4}[study]
    assert len(points) == expected
    for labels, callback in points:
        if callback is not None:
            cb = instantiate(callback)
            if study != "bits":
                assert cb.end_epoch < 8  # leaves epochs to fine-tune
    if study == "sparsity":
        assert [p[0]["sparsity"] for p in points[:10]] == [i / 10 for i in range(10)]


@pytest.mark.parametrize("study", STUDIES)
def test_plots_draw(study, tmp_path):
    rows = []
    for labels, _ in study_points(study, epochs=8):
        rows.append({**labels, "test_acc": 0.9, "parameters": 16652, "cpu_latency_ms": 0.1, "cpu_latency_ms_batch256": 2.0, "float_reference": 0.93})
    if study == "bits":
        rows += [{"method": "ptq", "bits": b, "test_acc": 0.8, "float_reference": 0.93} for b in (8, 4)]
    path = plot(study, rows, tmp_path)
    assert path.stat().st_size > 10_000


def test_unknown_study():
    with pytest.raises(ValueError, match="unknown study"):
        study_points("dropout", 8)

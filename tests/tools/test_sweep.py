"""The sweep's grid: every point is a valid callback configuration, and the plots draw."""

import importlib

import pytest

from kws.tools.sweep import STUDIES, plot, study_points


def instantiate(callback: dict):
    module, _, name = callback["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**callback["init_args"])


@pytest.mark.parametrize("study", STUDIES)
def test_every_point_is_a_valid_callback(study):
    points = study_points(study, epochs=8)
    expected = {"bits": 6, "sparsity": 20, "norms": 9, "structured": 4}[study]
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
        rows.append(
            {
                **labels,
                "test_acc": 0.9,
                "parameters": 16652,
                "cpu_latency_ms": 0.1,
                "cpu_latency_ms_batch256": 2.0,
                "float_reference": 0.93,
            }
        )
    if study == "bits":
        rows += [{"method": "ptq", "bits": b, "test_acc": 0.8, "float_reference": 0.93} for b in (8, 4)]
    path = plot(study, rows, tmp_path)
    assert path.stat().st_size > 10_000


def test_unknown_study():
    with pytest.raises(ValueError, match="unknown study"):
        study_points("dropout", 8)


def test_markdown_tables():
    from kws.tools.sweep import markdown_table

    rows = [
        {"method": "ptq", "bits": 8, "test_acc": 0.9288, "agreement": 0.998, "float_reference": 0.9306},
        {"method": "qat", "bits": 8, "test_acc": 0.9427, "float_reference": 0.9306},
        {"method": "float", "bits": 32, "test_acc": 0.9462, "float_reference": 0.9306},
    ]
    table = markdown_table("bits", rows)
    assert (
        "| 8 | 92.88 % | 99.80 % | 94.27 % |" in table
        and "| 2 | - | - | - |" in table
        and "94.62 % (fine-tuned alike)" in table
    )
    rows = [
        {"schedule": s, "sparsity": v, "test_acc": a}
        for s, v, a in [("one_shot", 0.0, 0.9), ("gradual", 0.0, 0.91), ("gradual", 0.8, 0.95)]
    ]
    table = markdown_table("sparsity", rows)
    assert "| 80.0 % | - | 95.00 % |" in table.splitlines()[-1]
    rows = [
        {
            "channel_fraction": 0.5,
            "test_acc": 0.967,
            "parameters": 8328,
            "flops": 338004,
            "cpu_latency_ms": 0.099,
            "cpu_latency_ms_batch256": 1.5,
        }
    ]
    assert "| 50 % | 96.70 % | 8,328 | 338,004 | 0.099 ms | 1.50 ms |" in markdown_table("structured", rows)

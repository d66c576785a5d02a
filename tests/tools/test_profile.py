"""Per-layer profile (kws.tools.profile.profile_model) and `python -m kws profile`, against
hand-computed TinyConv figures (the Profile callback is in tests/callbacks/test_profile.py)."""

import json

import pytest
import torch

from kws.__main__ import main as kws_main
from kws.compression.pruning import add_masks, get_mask, keep_channels
from kws.compression.quantization import wrap_fake_quant
from kws.models import TinyConv
from kws.tools.profile import count_flops, count_parameters, format_profile_table, profile_layers, profile_model

INPUT = (1960,)
CONV_OUT = 8 * 25 * 20  # TinyConv's conv output for 49 x 40 features
SUMMED = ("parameters", "nonzero_parameters", "bytes_float32", "bytes_int8", "bytes_int8_nonzero", "flops")


def by_name(profile):
    return {row["name"]: row for row in profile["layers"]}


def assert_rows_add_up(profile):
    for key in SUMMED:
        assert sum(row[key] for row in profile["layers"]) == profile["total"][key], key


def test_tinyconv_per_layer_and_total():
    profile = profile_model(TinyConv(), INPUT, batch_sizes=(1, 4), devices=["cpu"], min_run_time=0.01)
    assert [row["name"] for row in profile["layers"]] == ["conv", "relu", "dropout", "flatten", "fc"]
    layers, total = by_name(profile), profile["total"]
    assert total["parameters"] == total["nonzero_parameters"] == 16_652
    assert total["flops"] == 676_004 == count_flops(TinyConv(), INPUT)
    assert_rows_add_up(profile)
    conv, fc = layers["conv"], layers["fc"]
    assert (conv["parameters"], conv["flops"]) == (8 * 80 + 8, 2 * CONV_OUT * 80 + CONV_OUT)
    assert (fc["parameters"], fc["flops"]) == (4000 * 4 + 4, 2 * 4000 * 4 + 4)
    assert total["bytes_float32"] == 4 * 16_652
    # int8 weights, int32 biases: (640 + 16,000) x 1 + (8 + 4) x 4
    assert conv["bytes_int8"] == 640 + 8 * 4 and total["bytes_int8"] == total["bytes_int8_nonzero"] == 16_640 + 48
    assert conv["output_shape"] == [1, 8, 25, 20] and layers["flatten"]["output_shape"] == [1, 4000]
    assert conv["activation_bytes"] == CONV_OUT * 4 and fc["activation_bytes"] == 4 * 4
    assert total["input_bytes"] == 1960 * 4
    # ReLU (not in place) holds its input and its output; Dropout (eval) and Flatten are views of them.
    assert total["peak_activation_bytes"] == 2 * CONV_OUT * 4
    assert total["activation_bytes"] == 2 * CONV_OUT * 4 + 16
    assert set(profile["latency_ms"]) == {"cpu"} and set(profile["latency_ms"]["cpu"]) == {"1", "4"}
    assert all(ms > 0 for ms in profile["latency_ms"]["cpu"].values())
    json.dumps(profile)  # JSON-ready as it is


def test_profile_leaves_the_model_alone():
    model = TinyConv().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    profile_model(model, INPUT, batch_sizes=(2,), devices=["cpu"], min_run_time=0.01, threads=1)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_structured_pruned_and_rebuilt_model_is_smaller():
    model = keep_channels(TinyConv(), keep=[0, 2, 4, 6])  # 50 % of the channels, as Pruning leaves it
    profile = profile_layers(model, INPUT)
    total, conv = profile["total"], by_name(profile)["conv"]
    assert total["parameters"] == 8_328 == count_parameters(model)["parameters"]
    assert total["flops"] == 338_004 == count_flops(model, INPUT)
    assert total["bytes_float32"] == 4 * 8_328 and total["bytes_int8"] == 320 + 8000 + 4 * (4 + 4)
    assert conv["output_shape"] == [1, 4, 25, 20] and conv["activation_bytes"] == CONV_OUT * 4 // 2
    assert_rows_add_up(profile)


def test_unstructured_masks_count_as_zeros_and_wrappers_as_one_layer():
    model = TinyConv()
    add_masks(model, ["conv.weight", "fc.weight"])
    get_mask(model, "fc.weight")[:, :3000] = False  # 12,000 of 16,000 fc weights pruned, not yet permanent
    wrap_fake_quant(model)  # then quantization-aware training wraps both layers
    profile = profile_layers(model, INPUT)
    layers, total = by_name(profile), profile["total"]
    assert [row["name"] for row in profile["layers"]] == ["conv", "relu", "dropout", "flatten", "fc"]
    assert layers["fc"]["type"] == "QuantWrapper(ParametrizedLinear)"
    assert total["parameters"] == 16_652 and total["nonzero_parameters"] == 16_652 - 12_000
    assert layers["fc"]["bytes_int8"] == 16_000 + 16 and layers["fc"]["bytes_int8_nonzero"] == 4_000 + 16
    # dense FLOPs, bias adds of the wrapped layers included
    assert total["flops"] == 676_004 == count_flops(model, INPUT)
    assert_rows_add_up(profile)


def test_table_shows_layers_total_and_latency():
    profile = profile_model(TinyConv(), INPUT, batch_sizes=(1,), devices=["cpu"], min_run_time=0.01)
    table = format_profile_table(profile)
    lines = table.splitlines()
    assert any(
        line.startswith("conv ") and "1x8x25x20" in line and "648" in line and "644.00 k" in line for line in lines
    )
    total = next(line for line in lines if line.startswith("total"))
    assert "16,652" in total and "676.00 k" in total and "65.0 KiB" in total
    assert "latency cpu" in table and "batch 1:" in table


def test_cli_on_a_rebuilt_checkpoint(pruned_fit, tmp_path, capsys):
    _, _, ckpt = pruned_fit
    out = tmp_path / "p.json"
    kws_main(
        [
            "profile",
            "--ckpt",
            str(ckpt),
            "--out",
            str(out),
            "--min_run_time",
            "0.01",
            "--batch_sizes",
            "1",
            "3",
            "--devices",
            "cpu",
        ]
    )
    profile = json.loads(out.read_text())
    assert profile["total"]["parameters"] == 8_328 and profile["total"]["flops"] == 338_004
    assert by_name(profile)["conv"]["output_shape"] == [1, 4, 25, 20]
    assert set(profile["latency_ms"]["cpu"]) == {"1", "3"} and profile["source"] == str(ckpt)
    printed = capsys.readouterr().out
    assert "8,328" in printed and f"Profile: {out}" in printed


def test_cli_on_a_config(tmp_path, capsys):
    config = tmp_path / "conf.yaml"
    config.write_text(
        "model:\n  channels: 4\n  dropout: 0.2\n"
        "data:\n  wanted_words: [up, down, left]\n  features: {num_features: 20}\n"
    )
    out = tmp_path / "p.json"
    kws_main(
        [
            "profile",
            "--config",
            str(config),
            "--out",
            str(out),
            "--min_run_time",
            "0.01",
            "--batch_sizes",
            "1",
            "--devices",
            "cpu",
        ]
    )
    total = json.loads(out.read_text())["total"]
    # 49 x 20 features -> 4 x 25 x 10 conv outputs, 5 classes
    assert total["parameters"] == 4 * 80 + 4 + 1000 * 5 + 5


def test_cli_errors_name_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(SystemExit) as exit_info:
        kws_main(["profile", "--ckpt", str(missing)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"no checkpoint at {missing}" in err and "Traceback" not in err
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  chanels: 4\n")
    with pytest.raises(SystemExit):
        kws_main(["profile", "--config", str(config)])
    assert "bad.yaml: Group 'model' does not accept option 'chanels'" in capsys.readouterr().err
    not_ckpt = tmp_path / "x.ckpt"
    not_ckpt.write_text("hello")
    with pytest.raises(SystemExit):
        kws_main(["profile", "--ckpt", str(not_ckpt)])
    assert "is not a PyTorch checkpoint" in capsys.readouterr().err

"""The command line: config printing, bad keys, overrides and the plot tool."""

import yaml

from tests.helpers import run_kws


def test_print_config_round_trips_the_yaml():
    out = run_kws("fit", "--config", "conf.yaml", "--print_config").stdout
    config = yaml.safe_load(out)
    assert config["data"]["wanted_words"] == ["yes", "no"]
    assert config["data"]["features"]["frontend"] == "micro"
    assert config["model"]["learning_rate"] == 0.001


def test_bad_config_key_is_named():
    proc = run_kws("fit", "--config", "conf.yaml", "--data.wanted_wrods", "[yes]", check=False)
    assert proc.returncode != 0 and "wanted_wrods" in proc.stderr


def test_command_line_override():
    out = run_kws(
        "fit",
        "--config",
        "conf.yaml",
        "--data.features.frontend",
        "mfcc",
        "--model.learning_rate",
        "0.01",
        "--print_config",
    ).stdout
    config = yaml.safe_load(out)
    assert config["data"]["features"]["frontend"] == "mfcc" and config["model"]["learning_rate"] == 0.01


def test_plot_features_tool(tmp_path, micro_speech_dir):
    out = tmp_path / "yes.png"
    run_kws("plot-features", "--wav", str(micro_speech_dir / "yes_1000ms.wav"), "--out", str(out))
    assert out.stat().st_size > 10_000


def test_bad_compression_options_fail_at_config_time():
    cases = [
        (
            ["callbacks.QuantizationAwareTraining", "--trainer.callbacks.weight_bits", "9"],
            "weight_bits must be an integer from 2 to 8",
        ),
        (
            ["callbacks.QuantizationAwareTraining", "--trainer.callbacks.activation_bits", "1"],
            "activation_bits must be an integer from 2 to 8",
        ),
        (["callbacks.Pruning", "--trainer.callbacks.amount", "1.0"], "amount must be in [0, 1)"),
        (
            [
                "callbacks.Pruning",
                "--trainer.callbacks.amount",
                "0.5",
                "--trainer.callbacks.norm",
                "L3",
                "--trainer.callbacks.method",
                "structured",
            ],
            "norm must be L1, L2 or Linf",
        ),
    ]
    for extra, message in cases:
        proc = run_kws("fit", "--config", "conf.yaml", f"--trainer.callbacks+={extra[0]}", *extra[1:], check=False)
        assert proc.returncode != 0 and message in proc.stderr, (extra, proc.stderr[-2000:])
        assert "Decoding" not in proc.stderr  # failed before any data work


def test_data_groups_are_nested_keys_on_the_command_line_and_in_yaml(tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text("data:\n  augment:\n    max_cut: 0.3\n  lead_in:\n    seconds: [0.5, 1.0]\n")
    out = run_kws(
        "fit",
        "--config",
        "conf.yaml",
        "--config",
        str(override),
        "--data.augment.speed_probability",
        "0.25",
        "--data.classes.silence_percentage",
        "10",
        "--print_config",
    ).stdout
    data = yaml.safe_load(out)["data"]
    assert data["augment"]["speed_probability"] == 0.25 and data["augment"]["max_cut"] == 0.3
    assert data["augment"]["keep_fraction"] == 0.8  # the rest of conf.yaml's group stays
    assert data["lead_in"] == {**data["lead_in"], "enabled": True, "seconds": [0.5, 1.0], "fresh_probability": 0.3}
    assert data["classes"]["silence_percentage"] == 10 and data["features"]["frontend"] == "micro"


def test_a_flat_data_key_of_before_names_its_new_place_in_a_few_lines(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text("data:\n  speed_probability: 0.3\n")
    for args, new in (
        (["--data.max_cut", "0.5"], "data.max_cut is now data.augment.max_cut"),
        (["--config", str(old)], "data.speed_probability is now data.augment.speed_probability"),
        (["--data.lead_in", "true"], "data.lead_in is a group now: data.lead_in.enabled true"),
    ):
        proc = run_kws("fit", "--config", "conf.yaml", *args, check=False)
        lines = [line for line in proc.stderr.splitlines() if "cli.py:" not in line and "cpp_extension" not in line]
        assert proc.returncode == 2 and new in proc.stderr, proc.stderr[-2000:]
        assert len(lines) <= 6 and "usage:" not in proc.stderr, lines  # the error, not the usage first


def test_a_bad_group_value_names_its_key():
    proc = run_kws("fit", "--config", "conf.yaml", "--data.augment.speed_probability", "2", check=False)
    assert proc.returncode == 1 and "error: data.augment.speed_probability must be within [0, 1], got 2" in proc.stderr
    assert "Decoding" not in proc.stderr  # failed before any data work

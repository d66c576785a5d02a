"""The command line: config printing, bad keys, overrides and the plot tool."""
import yaml

from tests.helpers import run_kws


def test_print_config_round_trips_the_yaml():
    out = run_kws("fit", "--config", "conf.yaml", "--print_config").stdout
    config = yaml.safe_load(out)
    assert config["data"]["wanted_words"] == ["yes", "no"]
    assert config["data"]["frontend"] == "micro"
    assert config["model"]["learning_rate"] == 0.001


def test_bad_config_key_is_named():
    proc = run_kws("fit", "--config", "conf.yaml", "--data.wanted_wrods", "[yes]", check=False)
    assert proc.returncode != 0 and "wanted_wrods" in proc.stderr


def test_command_line_override():
    out = run_kws("fit", "--config", "conf.yaml", "--data.frontend", "mfcc", "--model.learning_rate", "0.01", "--print_config").stdout
    config = yaml.safe_load(out)
    assert config["data"]["frontend"] == "mfcc" and config["model"]["learning_rate"] == 0.01


def test_plot_features_tool(tmp_path, micro_speech_dir):
    out = tmp_path / "yes.png"
    run_kws("plot-features", "--wav", str(micro_speech_dir / "yes_1000ms.wav"), "--out", str(out))
    assert out.stat().st_size > 10_000


def test_bad_compression_options_fail_at_config_time():
    cases = [
        (["callbacks.QuantizationAwareTraining", "--trainer.callbacks.weight_bits", "9"], "weight_bits must be an integer from 2 to 8"),
        (["callbacks.QuantizationAwareTraining", "--trainer.callbacks.activation_bits", "1"], "activation_bits must be an integer from 2 to 8"),
        (["callbacks.Pruning", "--trainer.callbacks.amount", "1.0"], "amount must be in [0, 1)"),
        (["callbacks.Pruning", "--trainer.callbacks.amount", "0.5", "--trainer.callbacks.norm", "L3", "--trainer.callbacks.method", "structured"], "norm must be L1, L2 or Linf"),
    ]
    for extra, message in cases:
        proc = run_kws("fit", "--config", "conf.yaml", f"--trainer.callbacks+={extra[0]}", *extra[1:], check=False)
        assert proc.returncode != 0 and message in proc.stderr, (extra, proc.stderr[-2000:])
        assert "Decoding" not in proc.stderr  # failed before any data work

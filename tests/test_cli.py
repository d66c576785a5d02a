"""The command line: config printing, bad keys, overrides and the plot tool."""
import yaml

from conftest import run_kws


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

"""Entry point: Lightning subcommands (fit, validate, test, predict) plus kws's own tools."""
from __future__ import annotations

import argparse
import sys


def plot_features_main(argv: list[str]) -> None:
    from kws.features import FeatureSettings
    from kws.plots import plot_features

    parser = argparse.ArgumentParser(prog="python -m kws plot-features", description="Plot waveform, spectrum, spectrogram, mel spectrogram, MFCC and micro features of a clip.")
    parser.add_argument("--wav", required=True, help="the clip (16-bit PCM WAV)")
    parser.add_argument("--out", default=None, help="output PNG (default: <wav name>.features.png beside it)")
    args = parser.parse_args(argv)
    out = args.out or str(args.wav).rsplit(".", 1)[0] + ".features.png"
    print(plot_features(args.wav, out, FeatureSettings()))


def sweep_main(argv: list[str]) -> None:
    from kws.sweep import main

    main(argv)


def export_main(argv: list[str]) -> None:
    from kws.export import main

    main(argv)


def listen_main(argv: list[str]) -> None:
    from kws.listen import main

    main(argv)


def profile_main(argv: list[str]) -> None:
    from kws.profiling import main

    main(argv)


TOOLS = {"plot-features": plot_features_main, "sweep": sweep_main, "export": export_main, "listen": listen_main, "profile": profile_main}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TOOLS:
        TOOLS[argv[0]](argv[1:])
        return
    from kws.cli import cli_main

    cli_main(argv)


if __name__ == "__main__":
    main()

"""``python -m kws <command>``: the one way in. Lightning's subcommands (fit, validate, test,
predict) go to the LightningCLI; every other tool is named here."""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
import traceback
from typing import NoReturn
from unittest import mock

# command -> (module with a main(argv), what it does)
TOOLS = {
    "export": ("kws.export.pipeline", "PyTorch -> ONNX -> TFLite int8 -> C sources, verified in every runtime"),
    "listen": ("kws.deploy.listen", "detect keywords in a long recording as the firmware would"),
    "profile": ("kws.tools.profile", "parameters, bytes, FLOPs, activation memory, latency per layer"),
    "bench": ("kws.tools.bench", "training throughput, front-end speed, model latency per runtime"),
    "stream-test": (
        "kws.tools.stream_test",
        "keyword recall and false alarms per hour in long recordings of unseen speakers",
    ),
    "cross-check": (
        "kws.tools.cross_check",
        "held-out voices (flite, festival) and real speech: recall and false positives per voice",
    ),
    "sweep": ("kws.tools.sweep", "compression studies: bits, sparsity, norms, structured"),
    "corpus": ("datamodules.synthetic", "generate the offline corpus (espeak-ng voices)"),
    "plot-features": ("kws.training.plots", "waveform, spectrum, spectrogram, mel, MFCC and micro features of a clip"),
    "arduino-library": ("kws.export.arduino", "an export folder as an Arduino library (.zip) for the Arduino IDE"),
    "firmware-sim": ("kws.deploy.firmware_sim", "the firmware in QEMU (Cortex-M4F) against the host, bit for bit"),
}
LIGHTNING = ("fit", "validate", "test", "predict")
# How argparse's own errors about the command line begin (argparse.py).
ARGPARSE_USAGE_ERRORS = (
    "unrecognized arguments",
    "the following arguments are required",
    "argument ",
    "one of the arguments",
    "ambiguous option",
    "expected ",
)


def usage() -> str:
    lines = [
        "usage: python -m kws <command> [options]   (--help after a command for its options)",
        "",
        "Lightning (LightningCLI over conf.yaml):",
    ]
    lines += [
        f"  {name:<16} {what}"
        for name, what in zip(
            LIGHTNING,
            (
                "train, then test the best checkpoint",
                "validate a checkpoint",
                "test a checkpoint",
                "class probabilities of the test split",
            ),
        )
    ]
    lines += ["", "Tools:"] + [f"  {name:<16} {what}" for name, (_, what) in TOOLS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    if argv[0] in TOOLS:
        run_tool(argv[0], argv[1:])
        return
    if argv[0] not in LIGHTNING and not argv[0].startswith("-"):
        close = difflib.get_close_matches(argv[0], [*LIGHTNING, *TOOLS], n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        print(
            f"error: unknown command '{argv[0]}': {hint}choose from {', '.join([*LIGHTNING, *TOOLS])}", file=sys.stderr
        )
        sys.exit(2)
    run_lightning(argv)


def run_tool(name: str, argv: list[str]) -> None:
    """A tool's main. Its own checks end in one ``error:`` line and exit code 2 (argparse's);
    anything they miss ends here the same way, exit code 1 (``KWS_DEBUG=1`` shows the traceback),
    and Ctrl-C in exit code 130, the shell's, with one line instead of a traceback."""

    def error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
        # argparse's own errors (an unknown or missing option) as the tools' and Lightning's: one
        # `error:` line, no usage screen before it; exit code 2 as argparse's.
        of_usage = message.startswith(ARGPARSE_USAGE_ERRORS)  # not a tool's own parser.error() about an input
        hint = f" (python -m kws {name} --help for the options)" if of_usage else ""
        parser.exit(2, f"error: {message}{hint}\n")

    try:
        with mock.patch.object(argparse.ArgumentParser, "error", error):
            importlib.import_module(TOOLS[name][0]).main(argv)
    except KeyboardInterrupt:
        if os.environ.get("KWS_DEBUG"):
            traceback.print_exc()
        print(f"error: python -m kws {name} interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001  an error a tool's checks missed: still one line
        report_error(err)
        sys.exit(1)


def report_error(err: Exception) -> None:
    if os.environ.get("KWS_DEBUG"):
        traceback.print_exc()
    own = type(err).__module__.split(".")[0] in ("kws", "datamodules", "callbacks") or isinstance(
        err, (ValueError, OSError)
    )
    print(f"error: {err if own else f'{type(err).__name__}: {err}'}", file=sys.stderr)
    if not os.environ.get("KWS_DEBUG"):
        print("(set KWS_DEBUG=1 for the traceback)", file=sys.stderr)


def run_lightning(argv: list[str]) -> None:
    """The LightningCLI, its errors printed as the tools print theirs: one ``error:`` line and exit
    code 1 (``KWS_DEBUG=1`` shows the whole traceback)."""
    try:
        from kws.training.cli import cli_main

        cli_main(None if argv == sys.argv[1:] else argv)  # None: Lightning reads sys.argv itself, without a warning
    except Exception as err:  # noqa: BLE001  every failure of a run ends here
        report_error(err)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Never silent, for the tools: a bad input is one `error:` line naming it, exit code 2; an error a
tool missed is one line (exit 1, the traceback with KWS_DEBUG=1); Ctrl-C is exit 130."""

import pytest

from tests.helpers import REPO
from tests.test_promises import kws, one_clear_error


@pytest.mark.parametrize(
    "args, needle",
    [
        (["export", "--ckpt", "missing.ckpt"], "missing.ckpt"),
        (["listen", "missing.wav", "--model", "int8", "--tflite", str(REPO / "missing.tflite")], "missing.tflite"),
        (["stream-test", "--ckpt", "missing.ckpt"], "missing.ckpt"),
        (["plot-features", "--wav", "missing.wav", "--out", "p.png"], "missing.wav"),
        (["firmware-sim", "--export", "missing"], "missing"),
        (["arduino-library", "--export", "missing"], "missing"),
        (["corpus", "a_file"], "a_file"),
        (["listen"], "python -m kws listen --help"),  # argparse's own: one line too, no usage screen
        (["export", "--ckpt", "x.ckpt", "--bogus"], "--bogus"),
    ],
)
def test_every_tool_says_a_bad_input_in_one_line_with_exit_code_2(tmp_path, args, needle):
    (tmp_path / "a_file").write_text("mine")
    proc = kws(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    one_clear_error(proc, needle)
    assert not proc.stderr.startswith("usage:"), proc.stderr


def test_an_error_a_tool_missed_is_one_line_and_its_traceback_on_request(monkeypatch, capsys):
    import kws.__main__ as entry
    from kws.deploy import listen

    monkeypatch.setattr(listen, "main", lambda argv: [][1])
    with pytest.raises(SystemExit) as info:
        entry.main(["listen"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and err.startswith("error: IndexError: list index out of range")
    assert "Traceback" not in err
    monkeypatch.setenv("KWS_DEBUG", "1")
    with pytest.raises(SystemExit):
        entry.main(["listen"])
    assert "Traceback" in capsys.readouterr().err

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.delenv("KWS_DEBUG")
    monkeypatch.setattr(listen, "main", interrupted)
    with pytest.raises(SystemExit) as info:
        entry.main(["listen"])
    assert info.value.code == 130 and capsys.readouterr().err == "error: python -m kws listen interrupted\n"

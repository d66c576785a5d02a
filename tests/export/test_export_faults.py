"""export is never silent: a write error (a full disk) and Ctrl-C each end in one line, and the
earlier export in --out is left whole (the staging folder's promise, kws.export.pipeline)."""

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO
from tests.test_promises import checkpoint, corpus  # noqa: F401  fixtures


@pytest.fixture
def earlier(tmp_path):
    """An earlier export in --out (what the staging folder keeps): its files and their contents."""
    out = tmp_path / "export"
    out.mkdir()
    files = {"report.json": '{"earlier": true}', "model_int8.tflite": "earlier model", "notes.txt": "mine"}
    for name, text in files.items():
        (out / name).write_text(text)
    return out, files


def assert_intact(out, files):
    assert {p.name: p.read_text() for p in out.iterdir()} == files
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".partial")]


def test_a_full_disk_is_one_line_naming_the_folder(earlier, checkpoint, monkeypatch, capsys):  # noqa: F811
    from kws.export import pipeline

    out, files = earlier

    def full(model, path):
        path.write_bytes(b"half a model")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pipeline, "export_onnx", full)
    with pytest.raises(SystemExit) as info:
        pipeline.main(["--ckpt", str(checkpoint), "--out", str(out), "--calibration_clips", "10"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert info.value.code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert str(out) in errors[0] and "No space left on device" in errors[0] and "left as it was" in errors[0]
    assert_intact(out, files)


def test_ctrl_c_during_the_conversion_stops_the_export(earlier, checkpoint):  # noqa: F811
    """onnx2tf's bare `except:` clauses swallowed KeyboardInterrupt: the export ran on and exited 0."""
    out, files = earlier
    scratch = out.parent / "tmp"  # the export's temporary folder, where onnx2tf writes once it runs
    scratch.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), "TMPDIR": str(scratch)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kws",
            "export",
            "--ckpt",
            str(checkpoint),
            "--out",
            str(out),
            "--calibration_clips",
            "10",
        ],
        cwd=out.parent,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "[export] TFLite float and int8 conversion" in line:
            start = time.monotonic()  # Ctrl-C inside onnx2tf.convert, past TensorFlow's import: its folder is there
            while not list(scratch.glob("*/onnx2tf")) and time.monotonic() - start < 300 and proc.poll() is None:
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            break
    stdout, stderr = proc.communicate(timeout=600)
    assert seen and "conversion" in seen[-1], "".join(seen) + stderr[-2000:]
    assert proc.returncode == 130, (proc.returncode, stdout[-2000:], stderr[-3000:])
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors and "interrupted" in errors[-1] and str(out) in errors[-1] and "Traceback" not in stderr, stderr
    assert "[export] TFLite float and int8 conversion (onnx2tf):" not in stdout  # it stopped there
    assert_intact(out, files)

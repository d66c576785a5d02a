"""stream-test is never silent: a bad model file or --out is named before any work, and a
damaged stream cache is named and rebuilt, as the audio cache is."""

import numpy as np
import pytest

from kws.streams.evaluate import cached_stream
from tests.helpers import MICRO_SPEECH, make_corpus
from tests.test_promises import checkpoint, corpus, kws, one_clear_error  # noqa: F401  fixtures

REFERENCE = MICRO_SPEECH / "micro_speech_quantized.tflite"


@pytest.mark.parametrize("damage", ["cut", "garbage"])
def test_a_bad_tflite_is_named(tmp_path, checkpoint, damage):  # noqa: F811
    if not REFERENCE.is_file():
        pytest.skip(f"no reference model at {REFERENCE}")
    model = tmp_path / "model_int8.tflite"
    model.write_bytes(REFERENCE.read_bytes()[:5000] if damage == "cut" else b"not a model" * 100)
    proc = kws(
        "stream-test", "--ckpt", str(checkpoint), "--tflite", str(model), "--out", str(tmp_path / "out"), cwd=tmp_path
    )
    assert proc.returncode == 2
    one_clear_error(proc, str(model), "not a valid .tflite model")


def test_an_unwritable_out_is_named_before_any_work(tmp_path, checkpoint):  # noqa: F811
    (tmp_path / "a_file").write_text("mine")
    out = tmp_path / "a_file" / "results"
    proc = kws("stream-test", "--ckpt", str(checkpoint), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2
    one_clear_error(proc, f"--out {out}", "choose another --out")
    assert "Stream test" not in proc.stdout and (tmp_path / "a_file").read_text() == "mine"


@pytest.mark.parametrize("victim", [".json", ".wav"])
def test_a_damaged_stream_cache_is_named_and_rebuilt(tmp_path, victim):
    root = make_corpus(tmp_path / "c", lists=True)
    stream = cached_stream(root, "testing", 0, max_keywords=10, max_others=10)
    path = next((root / ".cache" / "streams").glob(f"*{victim}"))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.warns(UserWarning, match=f"stream cache .*{path.stem}.*damaged"):
        again = cached_stream(root, "testing", 0, max_keywords=10, max_others=10)
    assert np.array_equal(again.audio, stream.audio) and again.events == stream.events
    assert cached_stream(root, "testing", 0, max_keywords=10, max_others=10).events == stream.events  # mended

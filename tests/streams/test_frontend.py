"""A recording streamed in blocks of any size gives exactly the windows (and times) of the whole
recording at once: listen's bounded memory changes nothing it computes."""

import numpy as np
import pytest

from kws.audio.features import FeatureSettings
from kws.deploy.listen import stream_features, windows
from kws.streams.frontend import WindowStream, blocks_of, stream_windows


@pytest.mark.parametrize("frontend", ["micro", "mfcc"])
@pytest.mark.parametrize("block", [1, 333, 480, 16000, 10**6])
def test_blocks_of_any_size_give_the_whole_recording_windows(frontend, block):
    settings = FeatureSettings(frontend=frontend)
    audio = (np.random.default_rng(0).standard_normal(16000 * 4 + 123) * np.linspace(10, 8000, 16000 * 4 + 123)).astype(
        np.int16
    )
    if block == 1:
        audio = audio[: 16000 + 2000]  # one sample at a time: keep it short
    expected_x, expected_t = windows(stream_features(audio, settings), settings, 100)
    parts = list(stream_windows(blocks_of(audio, block), settings, 100))
    x, t = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    assert np.array_equal(t, expected_t)
    if frontend == "micro":
        assert np.array_equal(x, expected_x)  # the board's integers, exactly
    else:
        np.testing.assert_allclose(x, expected_x, atol=1e-4)  # float FFTs of other batch shapes


def test_window_times_and_strides():
    settings = FeatureSettings()
    frames = np.arange(60 * 40, dtype=np.float32).reshape(60, 40)
    stream = WindowStream(settings, 100)
    x1, t1 = stream.push(frames[:50])
    x2, t2 = stream.push(frames[50:])
    assert list(t1) == [990] and list(t2) == [1090, 1190]  # frame 48 ends at 990 ms, then every 5 frames
    assert np.array_equal(x2[0], frames[5:54].reshape(-1))
    with pytest.raises(ValueError, match="multiple of the 20 ms"):
        WindowStream(settings, 30)


def test_the_c_front_end_streams_what_the_pytorch_front_end_computes():
    import torch

    from kws.audio.features import build_frontend
    from kws.streams.frontend import StreamingFeatures

    settings = FeatureSettings()
    streaming = StreamingFeatures(settings)
    if not streaming.c_frontend:
        pytest.skip("the C front end library is not built")
    audio = (np.random.default_rng(1).standard_normal(16000 * 3) * 3000).astype(np.int16)
    frames = np.concatenate([streaming.push(block) for block in blocks_of(audio, 5000)])
    with torch.no_grad():
        expected = build_frontend(settings)(torch.from_numpy(audio)[None])[
            0
        ].numpy()  # the PyTorch port (C disabled below)
    from kws.audio.micro_frontend import MicroFrontend

    torch_only = MicroFrontend(settings.micro_config(), backend="torch")
    with torch.no_grad():
        reference = torch_only(torch.from_numpy(audio)[None])[0].numpy().astype(np.float32) * np.float32(10 / 256)
    assert np.array_equal(frames, expected) and np.array_equal(frames, reference)


def test_listening_with_an_int8_model_never_loads_pytorch(tmp_path, micro_speech_dir):
    """What runs on a small host beside the board: the C front end, tflite-micro, the recognizer."""
    import subprocess
    import sys

    from kws.audio.wav import read_wav, write_wav

    write_wav(
        tmp_path / "rec.wav", np.concatenate([read_wav(micro_speech_dir / "yes_1000ms.wav", 16000)[0]] * 3), 16000
    )
    code = (
        "import sys; from kws.__main__ import main; "
        f"main(['listen', r'{tmp_path / 'rec.wav'}', '--model', 'micro', '--tflite', "
        f"r'{micro_speech_dir / 'micro_speech_quantized.tflite'}']); "
        "assert 'torch' not in sys.modules, [m for m in sys.modules if m.startswith('torch')][:3]"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]

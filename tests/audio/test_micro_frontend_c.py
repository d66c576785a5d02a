"""The training library built from the firmware's C front end (kws.audio.micro_frontend_c):
bit-exact with the PyTorch port on batches, with states carried in and out, over any number of
threads; the probe digest it is checked with at run time is the PyTorch port's."""

import numpy as np
import pytest
import torch

from kws.audio import micro_frontend_c as C
from kws.audio.micro_frontend import MicroFrontend
from kws.audio.micro_tables import MicroFrontendConfig

pytestmark = pytest.mark.skipif(
    C.build_info() is None, reason="the C library is not built (make install builds it with gcc)"
)


def test_probe_digest_is_the_reference_output():
    audio, state = C.probe()
    values, estimates = MicroFrontend(backend="torch").forward_with_state(
        torch.from_numpy(audio), torch.from_numpy(state.astype(np.int64))
    )
    assert C.digest(values.numpy(), estimates.numpy()) == C.PROBE_SHA256, (
        f"the front end changed: set PROBE_SHA256 = {C.digest(values.numpy(), estimates.numpy())!r}"
    )
    assert C.digest(*C.process_batch(audio, state)) == C.PROBE_SHA256 and C.usable(MicroFrontendConfig())


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batches_equal_the_pytorch_port(threads):
    rng = np.random.default_rng(threads)
    audio = (
        (rng.standard_normal((77, 16000 + 320 * threads)) * rng.uniform(1, 20000, (77, 1)))
        .clip(-32768, 32767)
        .astype(np.int16)
    )
    state = rng.integers(0, 2**28, (77, 40))
    reference = MicroFrontend(backend="torch")
    for start in (None, state):
        expected = reference.forward_with_state(
            torch.from_numpy(audio), None if start is None else torch.from_numpy(start)
        )
        values, estimates = C.process_batch(audio, start, threads)
        assert np.array_equal(values, expected[0].numpy()) and np.array_equal(estimates, expected[1].numpy())


def test_the_module_uses_it_on_cpu_and_says_so():
    fe = MicroFrontend()
    assert fe._use_c() and not MicroFrontend(backend="torch")._use_c()
    with pytest.raises(ValueError, match="another configuration"):
        MicroFrontend(MicroFrontendConfig(num_channels=32), backend="c")
    assert not MicroFrontend(MicroFrontendConfig(num_channels=32))._use_c()  # other configs: the PyTorch port

"""Parameter and FLOP counts against hand-computed values."""

import torch

from kws.models import TinyConv
from kws.tools.profile import count_flops, count_parameters
from kws.utils.timing import latency_ms


def test_tinyconv_counts():
    model = TinyConv()
    assert count_parameters(model) == {"parameters": 16_652, "nonzero_parameters": 16_652}
    # conv: 8 x 25 x 20 outputs x 80 MACs x 2 + 4000 bias adds; fc: 4000 x 4 x 2 + 4 bias adds
    assert count_flops(model, (1960,)) == 2 * 8 * 25 * 20 * 80 + 4000 + 2 * 4000 * 4 + 4 == 676_004


def test_counts_follow_the_model():
    model = TinyConv(channels=4)
    with torch.no_grad():
        model.fc.weight[:, :1000] = 0
    counts = count_parameters(model)
    assert counts["parameters"] == 4 * 80 + 4 + 2000 * 4 + 4
    assert counts["nonzero_parameters"] == counts["parameters"] - 4000
    assert count_flops(model, (1960,)) == 2 * 4 * 500 * 80 + 2000 + 2 * 2000 * 4 + 4
    assert latency_ms(model, (1960,), min_run_time=0.01) > 0

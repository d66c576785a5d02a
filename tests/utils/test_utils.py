"""kws.utils: per-step seeds and the latency timer."""

import pytest
import torch

from kws.models import TinyConv
from kws.utils.seeding import step_seed
from kws.utils.timing import latency_ms, median_ms


def test_step_seed_is_a_function_of_the_step(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    seed = step_seed(3, 5, 0, "augment")
    assert seed == step_seed(3, 5, 0, "augment") and 0 <= seed < 2**63
    others = {step_seed(4, 5, 0, "augment"), step_seed(3, 6, 0, "augment"), step_seed(3, 5, 1, "augment")}
    assert seed not in others | {step_seed(3, 5, 0, "model")} and len(others) == 3
    monkeypatch.setenv("PL_GLOBAL_SEED", "8")
    assert step_seed(3, 5, 0, "augment") != seed


def test_latency_is_positive_and_leaves_the_model_in_eval():
    model = TinyConv().train()
    assert latency_ms(model, (1960,), min_run_time=0.01) > 0 and not model.training
    assert median_ms(lambda: torch.zeros(10).sum(), min_run_time=0.01) > 0
    with pytest.raises(ValueError, match="min_run_time must be > 0"):
        median_ms(lambda: None, min_run_time=0)

"""callbacks.Pruning: exact schedules, masks under Adam, channel ranking, the smaller rebuilt model,
checkpoints during and after pruning, and option errors."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks import Pruning
from kws.compression.pruning import channel_columns, get_mask
from kws.training.module import KWSModule


def bound(callback: Pruning, max_epochs: int = 30) -> KWSModule:
    """A KWSModule with ``callback`` set up for it, as at the start of ``fit``."""
    torch.manual_seed(0)
    module = KWSModule()
    callback.setup(SimpleNamespace(max_epochs=max_epochs), module, "fit")
    return module


def expected_sparsity(schedule: str, amount: float, start: int, end: int, epoch: int) -> float:
    """The schedules as the docs state them (s_i = 0), written out independently of the callback."""
    if epoch < start:
        return 0.0
    t = min(epoch, end)
    if schedule == "one_shot":
        return amount
    if schedule == "constant":
        return amount * (t - start + 1) / (end - start + 1)
    s_i, s_f, t0, span = 0.0, amount, start, end - start
    return s_f + (s_i - s_f) * (1 - (t - t0) / span) ** 3


def test_gradual_schedule_values():
    cb = Pruning(0.8, schedule="gradual", start_epoch=2, end_epoch=6)
    # 0.8 * (1 - (1 - k/4)^3) for k = 0..4, then held
    assert [cb.sparsity(e) for e in range(9)] == pytest.approx([0, 0, 0, 0.4625, 0.7, 0.7875, 0.8, 0.8, 0.8])
    cb = Pruning(0.6, schedule="constant", start_epoch=1, end_epoch=3)
    assert [cb.sparsity(e) for e in range(5)] == pytest.approx([0, 0.2, 0.4, 0.6, 0.6])
    assert [Pruning(0.5, start_epoch=2).sparsity(e) for e in range(4)] == [0, 0, 0.5, 0.5]


@pytest.mark.parametrize("schedule", ["one_shot", "constant", "gradual"])
@pytest.mark.parametrize(
    "method, scope", [("unstructured", "layer"), ("unstructured", "global"), ("structured", "layer")]
)
def test_each_step_prunes_exactly_round_s_n(schedule, method, scope):
    amount, start, end = 0.7, 2, 6
    cb = Pruning(
        amount,
        method=method,
        scope=scope,
        schedule=schedule,
        start_epoch=start,
        end_epoch=None if schedule == "one_shot" else end,
    )
    module = bound(cb)
    model = module.model
    previous = None
    for epoch in range(9):
        if start <= epoch <= (start if schedule == "one_shot" else end):
            cb.prune(module, epoch)
        s = expected_sparsity(schedule, amount, start, start if schedule == "one_shot" else end, epoch)
        if epoch < start:
            assert get_mask(model, "conv.weight") is None
            continue
        masks = {
            name: get_mask(model, f"{name}.weight") for name in (["conv"] if method == "structured" else ["conv", "fc"])
        }
        if method == "structured":
            channels = masks["conv"].flatten(1).any(1)
            assert int((~channels).sum()) == round(s * 8)
            assert torch.equal(masks["conv"], channels[:, None, None, None].expand_as(masks["conv"]))
            assert torch.equal(get_mask(model, "conv.bias"), channels)
        elif scope == "layer":
            for mask in masks.values():
                assert int((~mask).sum()) == round(s * mask.numel())
        else:
            assert sum(int((~m).sum()) for m in masks.values()) == round(s * (640 + 16000))
        for name, mask in masks.items():  # the layer's weight is zero wherever the mask is
            assert not getattr(model, name).weight[~mask].any()
        if previous is not None:  # pruned weights stay pruned
            assert all(not (m & ~previous[n]).any() for n, m in masks.items())
        previous = {n: m.clone() for n, m in masks.items()}
        with torch.no_grad():  # training moves the weights between steps, some to exactly 0 (ties with pruned ones)
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
                if p.dim() > 1:
                    p.view(-1)[:300] = 0


def test_masks_hold_through_adam_with_weight_decay():
    cb = Pruning(0.7)
    module = bound(cb)
    model = module.model
    cb.prune(module, 0)
    masks = {name: get_mask(model, f"{name}.weight").clone() for name in ("conv", "fc")}
    originals = {name: getattr(model, name).parametrizations.weight.original for name in masks}
    start = {name: p.detach().clone() for name, p in originals.items()}
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(5):
        x, y = torch.randn(16, 1960), torch.randint(0, 4, (16,))
        optimizer.zero_grad()
        nn.functional.cross_entropy(module(x), y).backward()
        optimizer.step()
        for name, mask in masks.items():
            # read as a wrapper would, without calling the layer
            assert int(getattr(model, name).weight.count_nonzero()) == int(mask.sum())
    for name, mask in masks.items():
        # weight decay moved the stored values behind the mask and training moved the kept ones
        assert not torch.equal(originals[name][~mask], start[name][~mask])
        assert not torch.equal(originals[name][mask], start[name][mask])
    cb.make_permanent(module, [optimizer])
    for name, mask in masks.items():
        weight = getattr(model, name).weight
        assert isinstance(weight, nn.Parameter) and torch.equal(weight != 0, mask)
        assert any(weight is p for p in optimizer.param_groups[0]["params"])
    assert "model.conv.weight" in module.state_dict() and not any("mask" in k for k in module.state_dict())


def hand_made_channels() -> torch.Tensor:
    """Conv weights [8, 1, 10, 8] whose lowest channel differs by norm: L1 -> 1, L2 -> 4, Linf -> 6."""
    w = torch.ones(8, 80)
    w[1] = 0
    w[1, 7] = 0.6  # one spike:            L1 0.6, L2 0.6,  Linf 0.6
    w[4] = 0
    w[4, :4] = -0.2  # four small weights: L1 0.8, L2 0.4,  Linf 0.2
    w[6] = 0.1  # eighty tiny weights:     L1 8.0, L2 0.89, Linf 0.1
    return w.view(8, 1, 10, 8)


@pytest.mark.parametrize(
    "norm, amount, dropped",
    [
        ("L1", 1 / 8, {1}),
        ("l2", 1 / 8, {4}),
        ("Linf", 1 / 8, {6}),
        ("l1", 2 / 8, {1, 4}),
        ("L2", 2 / 8, {1, 4}),
        ("linf", 2 / 8, {4, 6}),
    ],
)
def test_structured_ranks_channels_by_norm(norm, amount, dropped):
    w = hand_made_channels()
    lowest = {p: int(torch.linalg.vector_norm(w.flatten(1), ord=p, dim=1).argmin()) for p in (1, 2, float("inf"))}
    assert lowest == {1: 1, 2: 4, float("inf"): 6}  # the three norms disagree
    cb = Pruning(amount, method="structured", norm=norm)
    module = bound(cb)
    with torch.no_grad():
        module.model.conv.weight.copy_(w)
    cb.prune(module, 0)
    kept = get_mask(module.model, "conv.weight").flatten(1).any(1)
    assert set((~kept).nonzero().flatten().tolist()) == dropped


def test_structured_rebuild_is_smaller_with_identical_outputs():
    cb = Pruning(0.5, method="structured", norm="L2")
    module = bound(cb).eval()
    cb.prune(module, 0)
    kept = get_mask(module.model, "conv.weight").flatten(1).any(1)
    keep, dropped = kept.nonzero().flatten().tolist(), (~kept).nonzero().flatten().tolist()
    conv, fc = module.model.conv.weight.detach().clone(), module.model.fc.weight.detach().clone()
    x = torch.randn(32, 1960)
    with torch.no_grad():
        masked = module(x)
    summary = cb.make_permanent(module)
    with torch.no_grad():
        torch.testing.assert_close(module(x), masked)
    model = module.model
    assert (model.conv.out_channels, model.fc.in_features) == (4, 2000)
    assert sum(p.numel() for p in model.parameters()) == 8 * 80 // 2 + 4 + (2000 * 4 + 4)
    assert "parameters 16,652 -> 8,328" in summary and f"kept 4 of 8 channels {keep}" in summary
    assert torch.equal(model.conv.weight, conv[keep])
    columns = [c * 500 + i for c in keep for i in range(500)]
    assert torch.equal(model.fc.weight, fc[:, columns])
    removed = sorted(set(range(4000)) - set(columns))
    assert removed == [c * 500 + i for c in dropped for i in range(500)]
    assert channel_columns([1, 3], 2).tolist() == [2, 3, 6, 7]


class ReadsWeight(nn.Module):
    """Stands in for a fake-quantization wrapper: reads ``layer.weight`` and never calls the layer."""

    def __init__(self, layer: nn.Conv2d):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer._conv_forward(x, self.layer.weight.round(decimals=2), self.layer.bias)


def test_wrapped_layers_keep_masks_and_are_found_at_the_end():
    cb = Pruning(0.5, method="structured")
    module = bound(cb)
    cb.prune(module, 0)
    module.model.conv = ReadsWeight(module.model.conv)
    mask = get_mask(module.model, "conv.weight")
    optimizer = torch.optim.Adam(module.parameters(), weight_decay=0.1)
    for _ in range(3):  # a stale masked weight would fail here (backward through a freed graph)
        optimizer.zero_grad()
        nn.functional.cross_entropy(module(torch.randn(8, 1960)), torch.randint(0, 4, (8,))).backward()
        optimizer.step()
        assert torch.equal(module.model.conv.layer.weight != 0, mask)
    module.eval()
    x = torch.randn(4, 1960)
    with torch.no_grad():
        masked = module(x)
    cb.make_permanent(module, [optimizer])
    assert isinstance(module.model.conv, ReadsWeight) and module.model.conv.layer.out_channels == 4
    with torch.no_grad():
        torch.testing.assert_close(module(x), masked)
    module.model.conv = nn.Sequential(module.model.conv.layer, nn.Conv2d(4, 4, 1))
    with pytest.raises(ValueError, match="'conv' \\(Sequential\\) holds 2 Conv1d/Conv2d/Conv3d/Linear layers"):
        cb.sparsity_report(module.model)


class Outputs(L.Callback):
    """Records the model's eval-mode outputs on a fixed batch at the end of every training epoch."""

    def __init__(self, x):
        self.x, self.seen = x, {}

    def on_train_epoch_end(self, trainer, pl_module):
        pl_module.eval()
        with torch.no_grad():
            self.seen[trainer.current_epoch] = pl_module(self.x)
        pl_module.train()


def loaders():
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 1960, generator=g), torch.randint(0, 4, (64,), generator=g))
    return DataLoader(data, batch_size=32, shuffle=True), DataLoader(data, batch_size=32)


def trainer(tmp_path, max_epochs, *callbacks):
    return L.Trainer(
        max_epochs=max_epochs,
        logger=False,
        default_root_dir=tmp_path,
        callbacks=list(callbacks),
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
    )


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")  # the resumed run saves nothing
def test_fit_gradual_structured_then_checkpoints_reload(tmp_path):
    L.seed_everything(0)
    options = dict(amount=0.75, method="structured", norm="L1", schedule="gradual", start_epoch=0, end_epoch=2)
    outputs = Outputs(torch.randn(8, 1960))
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1, save_last=True)
    module = KWSModule()
    trainer(tmp_path, 4, Pruning(**options), outputs, checkpoints).fit(module, *loaders())
    # epochs 0, 1, 2 prune round(8 * s) = 0, round(5.25) = 5, 6 channels; epoch 3 fine-tunes
    assert [round(8 * expected_sparsity("gradual", 0.75, 0, 2, e)) for e in range(4)] == [0, 5, 6, 6]
    assert (module.model.conv.out_channels, module.model.fc.in_features) == (2, 1000)
    assert [entry["name"] for entry in module.model_transforms] == ["prune_masks", "prune_permanent", "prune_channels"]

    last = KWSModule.load_from_checkpoint(checkpoints.last_model_path).eval()
    assert last.model.conv.weight.shape == (2, 1, 10, 8) and last.model.fc.weight.shape == (4, 1000)
    with torch.no_grad():
        torch.testing.assert_close(last(outputs.x), outputs.seen[3], rtol=0, atol=0)

    mid = KWSModule.load_from_checkpoint(tmp_path / "ckpt" / "epoch=1.ckpt").eval()
    assert int((~get_mask(mid.model, "conv.weight").flatten(1).any(1)).sum()) == 5
    with torch.no_grad():
        torch.testing.assert_close(mid(outputs.x), outputs.seen[1], rtol=0, atol=0)
    # the last checkpoint's optimizer state was cut to the smaller model: training resumes from it
    resumed = KWSModule()
    run = trainer(tmp_path, 5, Pruning(**options))
    run.fit(resumed, *loaders(), ckpt_path=checkpoints.last_model_path)
    assert run.current_epoch == 5 and resumed.model.conv.out_channels == 2
    assert run.callback_metrics["pruning/channels/conv"] == 2 and run.callback_metrics["pruning/sparsity"] == 0


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(amount=1.0), "amount must be in \\[0, 1\\)"),
        (dict(amount=-0.1), "amount must be in \\[0, 1\\)"),
        (dict(amount=0.5, schedule="cubic"), "schedule must be one of"),
        (dict(amount=0.5, norm="L3"), "norm must be L1, L2 or Linf"),
        (dict(amount=0.5, method="random"), "method must be"),
        (dict(amount=0.5, scope="model"), "scope must be"),
        (dict(amount=0.5, method="structured", scope="global"), "scope 'global' is for unstructured"),
        (dict(amount=0.5, schedule="gradual", start_epoch=2), "needs end_epoch > start_epoch=2"),
        (dict(amount=0.5, schedule="gradual", start_epoch=2, end_epoch=2), "needs end_epoch > start_epoch=2"),
        (dict(amount=0.5, schedule="constant", start_epoch=3, end_epoch=1), "needs end_epoch >= start_epoch=3"),
        (dict(amount=0.5, start_epoch=2, end_epoch=5), "leave end_epoch out"),
        (dict(amount=0.5, start_epoch=-1), "start_epoch must be >= 0"),
        (
            dict(amount=0.5, schedule="constant", end_epoch=3, initial_amount=0.1),
            "initial_amount is for schedule 'gradual'",
        ),
        (dict(amount=0.5, schedule="gradual", end_epoch=3, initial_amount=0.6), "initial_amount must be in"),
        (dict(amount=0.5, layers=["conv", "conv"]), "layers must name distinct layers"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        Pruning(**options)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(amount=0.95, method="structured"), "would prune all 8 channels of 'conv'"),
        (dict(amount=0.5, layers=["conv", "fc2"]), "no layer 'fc2' in the model; prunable layers: \\['conv', 'fc'\\]"),
        (
            dict(amount=0.5, method="structured", layers=["fc"]),
            "structured pruning removes the output channels of one \\(ungrouped\\) convolution",
        ),
        (dict(amount=0.5, schedule="gradual", end_epoch=30), "end_epoch=30 must be below trainer.max_epochs=30"),
    ],
)
def test_bad_options_for_the_model_fail_in_setup(options, message):
    with pytest.raises(ValueError, match=message):
        bound(Pruning(**options))


def test_structured_may_leave_one_channel():
    cb = Pruning(0.9, method="structured")  # round(7.2) = 7 of 8 channels
    module = bound(cb)
    cb.prune(module, 0)
    cb.make_permanent(module)
    assert module.model.conv.out_channels == 1 and module.model.fc.in_features == 500

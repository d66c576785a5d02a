"""Structural model changes are logged, saved in the checkpoint and replayed on load."""

import pytest
import torch
from torch import nn

from kws.models.surgery import TRANSFORMS, apply_transform, register_transform
from kws.training.module import KWSModule


@register_transform("test_narrow_fc")
def narrow_fc(model: nn.Module, hidden: int) -> nn.Module:
    """A structural change a checkpoint cannot load without: fc -> fc1 -> fc2."""
    model.fc = nn.Sequential(nn.Linear(model.fc.in_features, hidden), nn.Linear(hidden, model.fc.out_features))
    return model


def save(module: KWSModule, path):
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": "2.6.6",
    }
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)


def test_transform_log_replays_on_load(tmp_path):
    module = KWSModule().eval()
    apply_transform(module, "test_narrow_fc", hidden=7)
    assert module.model_transforms == [{"name": "test_narrow_fc", "params": {"hidden": 7}}]
    save(module, tmp_path / "m.ckpt")
    loaded = KWSModule.load_from_checkpoint(tmp_path / "m.ckpt").eval()
    assert loaded.model.fc[0].out_features == 7
    x = torch.randn(5, 1960)
    torch.testing.assert_close(loaded(x), module(x), rtol=0, atol=0)
    # plain TinyConv would not accept these weights: the replay is what makes loading work
    with pytest.raises(RuntimeError):
        KWSModule().load_state_dict(module.state_dict())


def test_earlier_checkpoint_loads_into_a_transformed_module(tmp_path):
    plain = KWSModule()
    save(plain, tmp_path / "plain.ckpt")
    module = KWSModule()
    apply_transform(module, "test_narrow_fc", hidden=3)
    ckpt = torch.load(tmp_path / "plain.ckpt", weights_only=False)
    module.on_load_checkpoint(ckpt)
    module.load_state_dict(ckpt["state_dict"])
    assert module.model_transforms == [] and isinstance(module.model.fc, nn.Linear)


def test_unknown_transform_is_named():
    module = KWSModule()
    with pytest.raises(KeyError, match="no_such_transform"):
        module.on_load_checkpoint({"kws_model_transforms": [{"name": "no_such_transform", "params": {}}]})
    assert "test_narrow_fc" in TRANSFORMS


def test_init_from_starts_with_the_checkpoint_weights_and_structure(tmp_path):
    trained = KWSModule().eval()
    apply_transform(trained, "test_narrow_fc", hidden=5)
    save(trained, tmp_path / "t.ckpt")
    fresh = KWSModule(init_from=str(tmp_path / "t.ckpt"), learning_rate=0.01).eval()
    x = torch.randn(4, 1960)
    torch.testing.assert_close(fresh(x), trained(x), rtol=0, atol=0)
    assert fresh.hparams.learning_rate == 0.01 and fresh.model_transforms == trained.model_transforms
    with pytest.raises(
        ValueError,
        match=r"was trained with labels \['silence', 'unknown', 'yes', 'no'\] \(this run: "
        r"\['silence', 'unknown', 'up'\]\)",
    ):
        KWSModule(labels=["silence", "unknown", "up"], init_from=str(tmp_path / "t.ckpt"))
    with pytest.raises(ValueError, match="model.init_from: no checkpoint"):
        KWSModule(init_from=str(tmp_path / "missing.ckpt"))


def test_checkpoints_of_compressed_models_load_in_a_fresh_process(tmp_path):
    """Checkpoints store transform names ("prune_masks", "prune_permanent", "prune_channels",
    "fake_quant"): those names must stay registered, and importing kws alone (no callbacks, as
    export and listen do) must register them, so that old checkpoints keep loading."""
    import subprocess
    import sys

    from kws.compression.pruning import Pruner

    module = KWSModule().eval()
    pruner = Pruner(0.5, method="structured")
    pruner.bind(module.model)
    pruner.prune(module, 0)
    pruner.make_permanent(module)
    apply_transform(module, "fake_quant", weight_bits=8, activation_bits=8)
    module.eval()  # the new wrappers too
    assert [t["name"] for t in module.model_transforms] == [
        "prune_masks",
        "prune_permanent",
        "prune_channels",
        "fake_quant",
    ]
    save(module, tmp_path / "c.ckpt")
    x = torch.randn(3, 1960)
    torch.save(x, tmp_path / "x.pt")
    torch.save(module(x).detach(), tmp_path / "y.pt")
    code = (
        "import sys, torch; from kws.training.module import KWSModule; "
        "assert 'callbacks' not in sys.modules; "
        f"m = KWSModule.load_from_checkpoint(r'{tmp_path / 'c.ckpt'}').eval(); "
        f"assert torch.equal(m(torch.load(r'{tmp_path / 'x.pt'}')), torch.load(r'{tmp_path / 'y.pt'}')); "
        "assert m.model.conv.layer.out_channels == 4"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_entry_points_name_the_registered_transforms():
    """pyproject.toml's kws.model_transforms entry points are the functions the compression
    modules register under the same names (a renamed or moved one would break old checkpoints)."""
    from importlib.metadata import entry_points

    import kws.compression.pruning  # noqa: F401
    import kws.compression.quantization  # noqa: F401
    from kws.models.surgery import ENTRY_POINT_GROUP

    points = {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert set(points) == {"fake_quant", "prune_masks", "prune_permanent", "prune_channels"}
    assert all(TRANSFORMS[name] is fn for name, fn in points.items())

"""The data module's option groups (data.augment, data.lead_in, data.classes, data.features):
behaviour pinned to the flat-keyword code they replaced, errors that name the key, plain values in
hparams and checkpoints, and checkpoints saved with the flat keys."""

import hashlib

import numpy as np
import pytest
import torch

from datamodules import SpeechCommandsDataModule
from datamodules.classes import ClassShares
from datamodules.lead_in import LeadInConfig
from datamodules.renamed_keys import RENAMED, merge_data_sections, nest_flat_keys, renamed_hint
from datamodules.training_features import Augmentation
from kws.audio.settings import FeatureSettings
from tests.helpers import make_corpus

# Computed with the flat keywords at e23bcf0, before the groups, on make_corpus(speakers=30): the
# same clips, labels, evaluation audio and features, training batch and lead-in bank. A deliberate
# change of the pipeline re-pins them; a refactor must not.
PINNED = {
    "default": {
        "counts": {"training": (22, 22, 44, 44), "validation": (2, 2, 4, 4), "testing": (6, 6, 12, 12)},
        "rows": {"training": "be9fbb5af2e1", "validation": "dcd8a25b4216", "testing": "51a96655666b"},
        "labels": {"training": "5b219a7e2289", "validation": "28d3ff65d0ac", "testing": "400d89762c6c"},
        "audio": {"validation": "750eb3c416a3", "testing": "d18ff22f6a6f"},
        "features": {("validation", "fresh"): 218903.047, ("testing", "fresh"): 657206.094},
        "batch_audio": "aa87062fb745",
        "batch_features": 313874.727,
        "batch_labels": [3, 0, 3, 1, 3, 2, 3, 3, 2, 3, 1, 3, 0, 2, 3, 3],
    },
    "stream": {  # conf.yaml's kind of run: lead-ins, placement, neighbours, voices, masks, 100 % unknown
        "counts": {"training": (22, 88, 44, 44), "validation": (2, 2, 4, 4), "testing": (6, 6, 12, 12)},
        "rows": {"training": "c1349917e9b2", "validation": "dcd8a25b4216", "testing": "51a96655666b"},
        "labels": {"training": "b8b8f7e85cf6", "validation": "28d3ff65d0ac", "testing": "400d89762c6c"},
        "audio": {"validation": "d1d840249f26", "testing": "3dfd02ebaff6"},
        "features": {
            ("validation", "fresh"): 219677.773,
            ("testing", "fresh"): 657665.82,
            ("validation", "lead_in"): 156350.547,
            ("testing", "lead_in"): 495230.312,
        },
        "batch_audio": "68e345ceef3f",
        "batch_features": 135352.266,
        "batch_labels": [3, 1, 0, 2, 1, 2, 1, 1, 1, 1, 1, 1, 3, 1, 1, 1],
        "bank": (7766710625, 64),
        "calibration": 482495.273,
    },
}
STREAM = dict(
    noise_split=True,
    classes=ClassShares(training_unknown_percentage=100.0),
    lead_in=LeadInConfig(
        enabled=True, entries=64, eval_s=1.0, fresh_probability=0.3, seconds=(0.2, 5.0), level_ratio=(0.25, 4.0)
    ),
    augment=Augmentation(
        word_placement=True,
        max_cut=0.6,
        keep_fraction=0.8,
        neighbour_probability=0.5,
        speed_probability=0.5,
        eq_probability=0.5,
        reverb_probability=0.3,
        spec_masks=2,
    ),
)


def digest(array) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()[:12]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("pinned") / "corpus", speakers=30)


@pytest.mark.parametrize("run", ["default", "stream"])
def test_the_groups_give_the_clips_and_features_of_the_flat_keywords(run, corpus, tmp_path):
    pinned = PINNED[run]
    dm = SpeechCommandsDataModule(
        data_dir=str(corpus), batch_size=16, cache_dir=str(tmp_path), **(STREAM if run == "stream" else {})
    )
    dm.prepare_data()
    dm.setup()
    for split, counts in pinned["counts"].items():
        assert tuple(dm.counts[split].values()) == counts, split
        assert digest(dm.splits[split].rows) == pinned["rows"][split], split
        assert digest(dm.splits[split].labels) == pinned["labels"][split], split
    for split, expected in pinned["audio"].items():
        assert digest(dm.splits[split].audio) == expected, split
    assert set(pinned["features"]) == {(s, v) for s in ("validation", "testing") for v in dm.eval_views}
    for (split, view), total in pinned["features"].items():
        assert float(dm.eval_features[split][view].features.double().sum()) == pytest.approx(total, rel=1e-6)
    loader = dm._loader("training", shuffle=True)
    loader.sampler.set_epoch(2)
    audio, labels = next(iter(loader))
    assert digest(audio.numpy()) == pinned["batch_audio"]
    features, labels = dm.featurize_training(audio, labels, torch.Generator().manual_seed(123))
    assert float(features.double().sum()) == pytest.approx(pinned["batch_features"], rel=1e-6)
    assert labels.tolist() == pinned["batch_labels"]
    if "bank" in pinned:
        assert (int(dm.lead_in_bank.estimate.sum()), len(dm.lead_in_bank)) == pinned["bank"]
        x, _ = dm.split_features("training", clips=40, seed=3)
        assert float(x.astype(np.float64).sum()) == pytest.approx(pinned["calibration"], rel=1e-6)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Augmentation(speed_probability=2), r"data.augment.speed_probability must be within \[0, 1\], got 2"),
        (lambda: Augmentation(max_cut=1.0), r"data.augment.max_cut must be within \[0, 1\), got 1"),
        (lambda: Augmentation(background_volume=-0.1), r"data.augment.background_volume must be >= 0, got -0.1"),
        (lambda: Augmentation(speed_range=(1.2, 0.9)), r"data.augment.speed_range must be a range \[low, high\]"),
        (lambda: LeadInConfig(fresh_probability=1.5), r"data.lead_in.fresh_probability must be within \[0, 1\]"),
        (lambda: LeadInConfig(entries=0), r"data.lead_in.entries must be >= 1, got 0"),
        (lambda: LeadInConfig(eval_s=0.01), r"data.lead_in.eval_s must be >= 0.04"),
        (lambda: ClassShares(unknown_percentage=101), r"data.classes.unknown_percentage must be within \[0, 100\]"),
        (
            lambda: SpeechCommandsDataModule(augment={"speed_prob": 0.5}),
            r"data.augment has no option speed_prob; its options: ",
        ),
        (lambda: SpeechCommandsDataModule(lead_in=True), r"data.lead_in must be a mapping of LeadInConfig's options"),
    ],
)
def test_bad_options_name_their_key(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_hparams_hold_plain_values_that_rebuild_the_same_module():
    """hparams.yaml and checkpoints (opened with weights_only=True) may hold no kws class: the
    groups are saved as plain dicts, and a data module built from them has the same options."""
    dm = SpeechCommandsDataModule(**{k: v for k, v in STREAM.items()})
    for group in ("augment", "lead_in", "classes", "features"):
        assert type(dm.hparams[group]) is dict and type(dm.hparams_initial[group]) is dict, group
    assert dm.hparams["lead_in"]["seconds"] == [0.2, 5.0]  # a list, as YAML writes it
    again = SpeechCommandsDataModule(**dict(dm.hparams))
    for group in ("augment", "lead_in", "classes", "features"):
        assert getattr(again, group) == getattr(dm, group), group
    assert again.lead_in.seconds == (0.2, 5.0) and isinstance(again.features, FeatureSettings)


FLAT = {
    "data_dir": "d",
    "frontend": "micro",
    "num_features": 40,
    "lead_in": True,
    "lead_in_entries": 64,
    "lead_in_fresh_probability": 0.3,
    "max_cut": 0.6,
    "silence_percentage": 10.0,
    "batch_size": 8,
}


def test_flat_keys_of_old_checkpoints_move_into_their_groups():
    nested = nest_flat_keys(FLAT)
    assert nested == {
        "data_dir": "d",
        "batch_size": 8,
        "features": {"frontend": "micro", "num_features": 40},
        "lead_in": {"enabled": True, "entries": 64, "fresh_probability": 0.3},
        "augment": {"max_cut": 0.6},
        "classes": {"silence_percentage": 10.0},
    }
    assert nest_flat_keys(nested) == nested  # nested ones pass unchanged
    dm = SpeechCommandsDataModule(**nested)
    assert dm.lead_in.enabled and dm.augment.max_cut == 0.6 and dm.classes.silence_percentage == 10.0
    # Every flat key has a field of that name in its group.
    groups = {"augment": Augmentation, "lead_in": LeadInConfig, "classes": ClassShares, "features": FeatureSettings}
    for key, (group, name) in RENAMED.items():
        assert name in groups[group].__dataclass_fields__, key


def test_a_config_merges_into_a_checkpoints_groups_and_refuses_flat_keys():
    base = nest_flat_keys(FLAT)
    merged = merge_data_sections(base, {"augment": {"keep_fraction": 0.8}, "batch_size": 4})
    assert merged["augment"] == {"max_cut": 0.6, "keep_fraction": 0.8} and merged["batch_size"] == 4
    with pytest.raises(ValueError, match="data.max_cut is now data.augment.max_cut"):
        merge_data_sections(base, {"max_cut": 0.5})


def test_old_checkpoint_loads_through_lightning(tmp_path):
    """SpeechCommandsDataModule.load_from_checkpoint of a checkpoint with the flat keys: Lightning
    alone would drop them and leave the defaults."""
    path = tmp_path / "old.ckpt"
    import lightning

    torch.save(
        {
            "datamodule_hyper_parameters": dict(FLAT, lead_in_seconds=(0.2, 5.0)),
            "state_dict": {},
            "pytorch-lightning_version": lightning.__version__,
        },
        path,
    )
    dm = SpeechCommandsDataModule.load_from_checkpoint(path)
    assert dm.lead_in == LeadInConfig(enabled=True, entries=64, fresh_probability=0.3, seconds=(0.2, 5.0))
    assert dm.augment.max_cut == 0.6 and dm.classes.silence_percentage == 10.0 and dm.hparams.batch_size == 8


def test_hint_names_the_new_key():
    assert renamed_hint("unrecognized arguments: --data.max_cut 0.5") == (
        "data.max_cut is now data.augment.max_cut (YAML: data: {augment: {max_cut: ...}})\n"
    )
    assert "data.classes.silence_percentage" in renamed_hint("Group 'data' does not accept option 'silence_percentage'")
    assert "data.lead_in.enabled true" in renamed_hint("Parser key \"data.lead_in\":\nUnable to load config 'true'")
    assert renamed_hint("unrecognized arguments: --data.augment.max_cutt 0.5 --data.wanted_wrods") == ""


def test_the_tools_read_the_nested_config_and_name_a_flat_key(tmp_path):
    from kws.training.checkpoints import CheckpointError, load_config_model
    from tests.helpers import REPO

    module, _ = load_config_model(REPO / "conf.yaml")
    assert tuple(module.hparams.input_shape) == (49, 40)
    old = tmp_path / "old.yaml"
    old.write_text("data:\n  max_cut: 0.5\n")
    with pytest.raises(CheckpointError, match="data.max_cut is now data.augment.max_cut"):
        load_config_model(old)


@pytest.mark.parametrize("saved", [{"frontend": "mfcc"}, {"features": {"frontend": "mfcc"}}], ids=["flat", "nested"])
def test_a_checkpoints_feature_settings_are_checked_flat_or_nested(saved):
    from kws.training.checkpoint_file import FEATURE_KEYS, CheckpointError, check_compatible

    checkpoint = {"hyper_parameters": {"labels": ["a"], "input_shape": (49, 40)}, "datamodule_hyper_parameters": saved}
    features = {key: getattr(FeatureSettings(), key) for key in FEATURE_KEYS}
    with pytest.raises(CheckpointError, match=r"data.features.frontend 'mfcc' \(this run: 'micro'\)"):
        check_compatible(checkpoint, "x.ckpt", ["a"], (49, 40), features)

"""Word placement: extents in numpy and torch agree; placed words stay (partly) inside as asked;
neighbours land at the asked gap; the data module relabels cut keywords."""

import numpy as np
import pytest
import torch

from datamodules.placement import add_neighbours, place_words
from datamodules.training_features import Augmentation
from datamodules.word_extent import word_extents, word_extents_torch


def bursts(n, rng, length=16000, floor=3.0):
    out = rng.normal(0, floor, (n, length))
    ext = []
    for i in range(n):
        w = int(rng.integers(3000, 9000))
        s = int(rng.integers(0, length - w))
        out[i, s : s + w] += rng.uniform(1000, 9000) * np.sin(np.arange(w) * 0.2)
        ext.append((s, s + w))
    return np.round(out).astype(np.int16), np.array(ext)


def test_extents_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    audio, truth = bursts(64, rng)
    audio[5] = 0
    a = word_extents(audio)
    assert np.array_equal(a, word_extents_torch(torch.from_numpy(audio)).numpy())
    assert a[5].tolist() == [0, 16000]
    ok = np.delete(np.arange(64), 5)
    assert np.abs(a[ok] - truth[ok]).max() <= 160


@pytest.mark.parametrize("max_cut", [0.0, 0.5])
def test_place_words_keeps_the_asked_part_inside(max_cut):
    rng = np.random.default_rng(1)
    audio, _ = bursts(400, rng, floor=0.0)  # no floor: zero fill changes nothing the extents see
    x = torch.from_numpy(audio)
    extents = word_extents_torch(x)
    placed, inside, new = place_words(x, extents, max_cut, torch.Generator().manual_seed(0))
    assert (inside >= 1 - max_cut - 1e-6).all() and (inside <= 1).all()
    if max_cut == 0:
        assert (inside == 1).all()
        # The whole word moved: its energy is kept.
        assert torch.allclose(placed.float().pow(2).sum(1), x.float().pow(2).sum(1), rtol=0.02)
    else:
        assert (inside < 0.75).float().mean() > 0.1  # some words really are cut
    got = word_extents_torch(placed)
    ok = inside > 0.3
    assert ((got - new).abs()[ok] <= 320).all()
    # Positions spread over the window.
    assert new[:, 0].float().std() > 2500


def test_neighbours_are_placed_at_the_gap():
    audio = np.zeros((200, 16000), np.int16)
    audio[:, 7000:9000] = 5000
    donors = np.zeros((200, 16000), np.int16)
    donors[:, 1000:5000] = 3000
    x, d = torch.from_numpy(audio), torch.from_numpy(donors)
    ext, dext = torch.tensor([[7000, 9000]] * 200), torch.tensor([[1000, 5000]] * 200)
    use = torch.arange(200) % 2 == 0
    out = add_neighbours(x, ext, d, dext, use, gap_s=(0.1, 0.1), pad_ms=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[~use], x[~use])
    sides = []
    for row in out[use]:
        nz = (row == 3000).nonzero().flatten()
        # before: ends 1600 samples before 7000; after: starts 1600 after 9000; 4000 samples long
        span = (nz.min().item(), nz.max().item() + 1, len(nz))
        assert span in ((1400, 5400, 4000), (10600, 14600, 4000))
        sides.append(span[0] == 1400)
        assert (row[7000:9000] == 5000).all()
    assert 20 < sum(sides) < 80  # both sides drawn
    # below: the donor is added only where less than that fraction of it is in the window. Here it
    # lies whole inside (fraction 1) on both sides, so below=1.0 refuses every one and 2.0 none.
    refused = add_neighbours(
        x,
        ext,
        d,
        dext,
        use,
        gap_s=(0.1, 0.1),
        pad_ms=0.0,
        generator=torch.Generator().manual_seed(0),
        below=torch.full((200,), 1.0),
    )
    assert torch.equal(refused, x)
    allowed = add_neighbours(
        x,
        ext,
        d,
        dext,
        use,
        gap_s=(0.1, 0.1),
        pad_ms=0.0,
        generator=torch.Generator().manual_seed(0),
        below=torch.full((200,), 2.0),
    )
    assert torch.equal(allowed, out)


def test_neighbour_cut_at_the_window_edge():
    audio = np.zeros((1, 16000), np.int16)
    audio[:, 2000:4000] = 5000
    donors = np.zeros((1, 16000), np.int16)
    donors[:, 1000:5000] = 3000
    spans = set()
    for seed in range(6):
        out = add_neighbours(
            torch.from_numpy(audio),
            torch.tensor([[2000, 4000]]),
            torch.from_numpy(donors),
            torch.tensor([[1000, 5000]]),
            torch.tensor([True]),
            gap_s=(0.125, 0.125),
            pad_ms=0.0,
            generator=torch.Generator().manual_seed(seed),
        )
        nz = (out[0] == 3000).nonzero().flatten()
        # after: [6000, 10000); before: [-4000, 0), entirely cut
        spans.add((nz.min().item(), nz.max().item()) if len(nz) else None)
    assert spans == {(6000, 9999), None}  # both sides drawn over the seeds


def test_datamodule_relabels_cut_keywords(tiny_corpus, tmp_path):
    from datamodules import SpeechCommandsDataModule

    dm = SpeechCommandsDataModule(
        data_dir=str(tiny_corpus),
        cache_dir=str(tmp_path),
        batch_size=64,
        augment=Augmentation(
            word_placement=True, max_cut=0.6, keep_fraction=0.7, neighbour_probability=0.5, spec_masks=2
        ),
    )
    dm.prepare_data()
    dm.setup()
    audio, labels = dm.splits["training"][list(range(len(dm.splits["training"])))]
    features, new = dm.featurize_training(audio, labels, torch.Generator().manual_seed(0))
    assert features.shape == (len(labels), 1960)
    changed = new != labels
    assert changed.any() and (new[changed] == dm.labels.index("unknown")).all() and (labels[changed] >= 2).all()
    # Same seed, same batch: same features and labels.
    again, again_labels = dm.featurize_training(audio, labels, torch.Generator().manual_seed(0))
    assert torch.equal(features, again) and torch.equal(new, again_labels)
    # keep_fraction 0: nobody is relabelled.
    import dataclasses

    dm.augment = dataclasses.replace(dm.augment, keep_fraction=0.0)
    assert torch.equal(dm.featurize_training(audio, labels, torch.Generator().manual_seed(0))[1], labels)

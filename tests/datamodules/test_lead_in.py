"""Lead-in front-end states: a clip featurized from a bank entry equals the same clip streamed
after the entry's lead-in, bit for bit; the clip's noise continues the lead-in's; the data module
trains and evaluates with them."""

import numpy as np
import pytest
import torch

from datamodules.augment import BackgroundNoise
from datamodules.lead_in import LeadInBank, LeadInConfig, features_after, lead_in_rows
from kws.audio.features import FeatureSettings, MicroFeatures

FRONTEND = MicroFeatures(FeatureSettings())


def speechy(rng, n, samples):
    """Bursts of tones and noise at varied levels: something for the noise estimate to follow."""
    t = np.arange(samples)
    out = rng.normal(0, 3, (n, samples))
    burst = min(5000, samples // 2)
    for i in range(n):
        s = int(rng.integers(0, samples - burst + 1))
        out[i, s : s + burst] += rng.uniform(500, 9000) * np.sin(t[:burst] * rng.uniform(0.05, 0.5)) + rng.normal(
            0, 300, burst
        )
    return np.clip(out, -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("lead", [640, 960, 320 * 50, 32000])
def test_features_after_equal_streaming_the_concatenation(lead):
    rng = np.random.default_rng(lead)
    a, c = speechy(rng, 3, lead), speechy(rng, 3, 16000)
    streamed = FRONTEND(torch.from_numpy(np.concatenate([a, c], 1)))
    _, estimate = FRONTEND.forward_with_state(torch.from_numpy(a))
    got = features_after(FRONTEND, torch.from_numpy(a[:, -320:]), estimate, torch.from_numpy(c))
    k = lead // 320
    assert torch.equal(got, streamed[:, k : k + 49])


def test_state_in_and_out_equal_one_pass():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(speechy(rng, 2, 48000))
    whole = FRONTEND.frontend(x)
    v1, e1 = FRONTEND.frontend.forward_with_state(x[:, : 320 * 60 + 160])  # 60 frames
    v2, _ = FRONTEND.frontend.forward_with_state(x[:, 320 * 60 :], e1)
    assert torch.equal(torch.cat([v1, v2], 1), whole)


@pytest.fixture(scope="module")
def noise():
    rng = np.random.default_rng(5)
    return BackgroundNoise(
        [torch.from_numpy(rng.normal(0, 3000, n).astype(np.int16)) for n in (80_000, 120_000)], 16000
    )


def test_bank_entries_featurize_as_the_stream(noise):
    rng = np.random.default_rng(2)
    words = speechy(rng, 8, 16000)
    extents = np.tile([[2000, 9000]], (8, 1))
    bank, leads = LeadInBank.build(
        FRONTEND,
        noise,
        words,
        extents,
        {"speech": 12, "silence": 4},
        seed=1,
        config=LeadInConfig(seconds=(0.5, 2.0), word_probability=0.7),
        return_audio=True,
    )
    assert len(bank) == 16 and (bank.pool == 1).sum() == 4 and (bank.volume[bank.pool == 1] > 0).all()
    clips = torch.from_numpy(speechy(rng, 16, 16000))
    index = torch.arange(16)
    mixed = bank.mix(clips, index, noise, torch.Generator().manual_seed(0))
    got = bank.features(FRONTEND, mixed, index)
    for i in range(16):
        streamed = FRONTEND(torch.from_numpy(np.concatenate([leads[i], mixed[i].numpy()]))[None])[0]
        k = len(leads[i]) // 320
        assert torch.equal(got[i], streamed[k:])
    # The clip's noise is the recording right after the lead-in's: a zero clip gets volume x that crop (+ the floor).
    silent = bank.mix(torch.zeros(16, 16000, dtype=torch.int16), index, noise, torch.Generator().manual_seed(0)).float()
    expected = bank.volume[:, None] * noise.bank[bank.noise_start[:, None] + torch.arange(16000)].float()
    assert ((silent - expected).abs() <= 6 * bank.floor[:, None] + 1).float().mean() > 0.999


def test_draw_takes_each_clip_from_its_pool(noise):
    bank = LeadInBank.build(
        FRONTEND,
        noise,
        np.zeros((0, 16000), np.int16),
        np.zeros((0, 2), np.int64),
        {"speech": 6, "silence": 3},
        config=LeadInConfig(seconds=(0.1, 0.3)),
    )
    pools = torch.tensor([0, 1] * 50)
    index = bank.draw(pools, torch.Generator().manual_seed(0))
    assert torch.equal(bank.pool[index], pools)
    assert set(index[pools == 0].tolist()) == set(range(6))  # every speech entry is drawn
    with pytest.raises(ValueError, match="clean"):
        bank.draw(torch.tensor([2]))


def test_evaluation_rows_are_seeded_and_end_with_the_clip(noise):
    rng = np.random.default_rng(3)
    clips = speechy(rng, 4, 16000)
    words, extents = speechy(rng, 3, 16000), np.tile([[2000, 9000]], (3, 1))
    silence = np.array([False, True, False, True])
    rows = lead_in_rows(clips, noise, words, extents, silence, seed=4, seconds=1.0)
    assert rows.shape == (4, 32000) and np.array_equal(
        rows, lead_in_rows(clips, noise, words, extents, silence, seed=4, seconds=1.0)
    )
    assert np.array_equal(rows[~silence, 16000:], clips[~silence])  # speech clips stay clean
    assert not np.array_equal(rows[silence, 16000:], clips[silence])  # silence continues the noise
    # noise of 5 s and 7.5 s: only the longer one holds a 6 s lead-in and a clip; none a 7 s one
    long_rows = lead_in_rows(clips, noise, words, extents, silence, seed=4, seconds=6.0)
    assert long_rows.shape == (4, 112000)
    with pytest.raises(ValueError, match="shorter than the 7 s evaluation lead-in plus one clip.*data.lead_in.eval_s"):
        lead_in_rows(clips, noise, words, extents, silence, seed=4, seconds=7.0)


def test_datamodule_trains_and_evaluates_after_lead_ins(tiny_corpus, tmp_path):
    from datamodules import SpeechCommandsDataModule

    def make():
        dm = SpeechCommandsDataModule(
            data_dir=str(tiny_corpus),
            cache_dir=str(tmp_path),
            batch_size=16,
            noise_split=True,
            lead_in=LeadInConfig(enabled=True, entries=64, eval_s=1.0),
        )
        dm.prepare_data()
        dm.setup()
        return dm

    dm = make()
    assert len(dm.lead_in_bank) == 64 and list(tmp_path.glob("lead_in-*.npz"))
    audio, labels = dm.splits["testing"][[0, 1, 2]]
    assert audio.shape[1] == 32000  # the lead-in, then the clip
    assert dm.eval_views == ("lead_in", "fresh")
    after, fresh = dm.test_dataloader()  # one loader per view, the board's first
    x, y = next(iter(after))
    assert x.dtype == torch.float32 and x.shape[1] == 49 * 40
    assert torch.equal(x[:3], dm.featurize(audio))
    # the same clips from a fresh state: the clip alone through the front end, other features
    x_fresh, y_fresh = next(iter(fresh))
    clips, _ = dm.fresh_clips["testing"][[0, 1, 2]]
    assert torch.equal(y_fresh, y) and torch.equal(clips, audio[:, -16000:])
    assert torch.equal(x_fresh[:3], dm.featurize(clips)) and not torch.equal(x_fresh[:3], x[:3])
    assert np.array_equal(dm.split_features("testing", view="fresh")[0][:3], x_fresh[:3].numpy())
    train_audio, train_labels = dm.splits["training"][list(range(16))]
    a = dm.featurize(train_audio, train_labels, torch.Generator().manual_seed(1))
    b = make().featurize(train_audio, train_labels, torch.Generator().manual_seed(1))  # from the cached bank
    assert a.shape == (16, 1960) and torch.equal(a, b)
    # MFCC keeps no state between frames: nothing to carry, so no lead-in (the set-up says so).
    assert not SpeechCommandsDataModule(features=dict(frontend="mfcc"), lead_in=dict(enabled=True)).uses_lead_in
    with pytest.raises(ValueError, match="20 ms stride.*data.features.stride_ms 10: set data.lead_in.enabled: false"):
        SpeechCommandsDataModule(lead_in=dict(enabled=True), features=dict(stride_ms=10))


def test_fresh_probability_mixes_fresh_and_carried_states():
    """A share of training clips featurized from a fresh state, the rest after their lead-in: each
    row is exactly one of the two (bit for bit), and the share follows fresh_probability."""
    rng = np.random.default_rng(9)
    noise = BackgroundNoise([torch.from_numpy(rng.normal(0, 3000, 80_000).astype(np.int16))], 16000)
    bank = LeadInBank.build(
        FRONTEND,
        noise,
        np.zeros((0, 16000), np.int16),
        np.zeros((0, 2), np.int64),
        {"speech": 8, "silence": 2},
        config=LeadInConfig(seconds=(0.2, 2.0), level_ratio=(0.25, 4.0)),
    )
    clips = torch.from_numpy(speechy(rng, 64, 16000))
    index = bank.draw(torch.zeros(64, dtype=torch.int64), torch.Generator().manual_seed(0))
    fresh = torch.arange(64) % 3 == 0
    mixed = bank.features(FRONTEND, clips, index, fresh)
    assert torch.equal(mixed[fresh], FRONTEND(clips[fresh]))
    assert torch.equal(mixed[~fresh], bank.features(FRONTEND, clips[~fresh], index[~fresh]))
    assert not torch.equal(FRONTEND(clips[~fresh]), mixed[~fresh])
    silence = torch.zeros(64, dtype=torch.bool)
    none = bank.featurize(FRONTEND, clips, silence, noise, torch.Generator().manual_seed(1), fresh_probability=0.0)
    half = bank.featurize(FRONTEND, clips, silence, noise, torch.Generator().manual_seed(1), fresh_probability=0.5)
    same = (none == half).flatten(1).all(1)  # the same draws: rows left carried are unchanged
    assert 16 <= int((~same).sum()) <= 48
    with pytest.raises(ValueError, match=r"data.lead_in.level_ratio must be a range \[low, high\]"):
        LeadInConfig(level_ratio=(2.0, 1.0))

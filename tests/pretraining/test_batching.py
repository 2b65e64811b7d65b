"""Audio batches at the published scale: length-bucketed batches of at most ``data.max_tokens``
samples (fairseq's max_tokens), cropped to their shortest clip, the same for any process count,
``update_freq`` or restart; and ``require_same_masks``: every row of a batch masks as many
frames, whatever the split of the batch over processes or micro-batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data2vec.pretraining.data import AudioFiles, StepBatches
from data2vec.pretraining.modalities import adapter_for
from data2vec.pretraining.recipe import Recipe, RecipeError
from tests.pretraining.tiny_setup import tiny_recipe_dict

# two groups of very different lengths; the long clips are capped at MAX_SAMPLE_SIZE samples
SHORT = [1000, 1010, 1020, 1030, 1040, 1050, 1060, 1070, 1080, 1090, 1095, 1099]  # 12 clips
LONG = [3000, 3100, 3200, 3300, 3400, 3500, 3600, 3700]  # 8 clips, all cropped to 3000
MAX_SAMPLE_SIZE, MAX_TOKENS = 3000, 6000  # long batches: 2 clips; short batches: 6000 // 1099 = 5 clips


class SilentClips:
    """The lengths of audio clips, loaded as zeros (cropped as AudioFiles crops)."""

    def __init__(self, lengths, max_sample_size=MAX_SAMPLE_SIZE):
        self.lengths = np.asarray(lengths)
        self.crop_lengths = np.minimum(self.lengths, max_sample_size)

    def __len__(self):
        return len(self.lengths)

    def load(self, indices, rngs, group):
        crop = int(self.crop_lengths[np.asarray(group)].min())
        return {"input_values": torch.zeros(len(indices), crop), "items": torch.tensor(list(indices))}


def write_clips(folder, lengths, seed=0):
    """Wav files of noise of the given lengths (16 kHz) and their manifest."""
    import soundfile

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [str(folder)]
    for index, length in enumerate(lengths):
        soundfile.write(folder / f"clip{index}.wav", (0.1 * rng.standard_normal(length)).astype(np.float32), 16000)
        lines.append(f"clip{index}.wav\t{length}")
    (folder / "manifest.tsv").write_text("\n".join(lines) + "\n")
    return folder / "manifest.tsv"


def test_buckets_fill_the_budget_with_clips_of_similar_length_and_crop_to_the_shortest(tmp_path):
    lengths = SHORT + LONG
    manifest = write_clips(tmp_path / "clips", lengths)
    clips = AudioFiles.from_source(manifest, max_sample_size=MAX_SAMPLE_SIZE, normalize=False)
    batches = StepBatches(clips, None, seed=5, max_tokens=MAX_TOKENS)
    # 8 long clips -> 4 batches of 2; 12 short clips -> batches of 5, 5, 2
    assert batches.batches_per_epoch == batches.steps_per_epoch == 7
    for epoch in (0, 1):
        seen = []
        for step in range(epoch * 7, epoch * 7 + 7):
            batch = batches[step]
            items = batches.update_batches(step)[0].tolist()
            assert batch["input_values"].shape[0] == len(items)
            crop = min(min(lengths[item], MAX_SAMPLE_SIZE) for item in items)
            assert batch["input_values"].shape[1] == crop  # the batch's shortest clip, capped
            assert len(items) * crop <= MAX_TOKENS
            assert len(items) * max(min(lengths[item], MAX_SAMPLE_SIZE) for item in items) <= MAX_TOKENS
            groups = {lengths[item] >= 3000 for item in items}
            assert len(groups) == 1  # short and long clips never share a batch
            if groups == {True}:
                assert len(items) == 2  # 2 x 3000 samples
            seen += items
        assert sorted(seen) == list(range(len(lengths)))  # every clip once per epoch
    # the batch order is reshuffled every epoch
    assert [b.tolist() for b in batches.buckets(0)] != [b.tolist() for b in batches.buckets(1)]
    assert sorted(map(len, batches.buckets(0))) == sorted(map(len, batches.buckets(1))) == [2, 2, 2, 2, 2, 5, 5]


def test_buckets_do_not_depend_on_processes_update_freq_or_restarts():
    clips = SilentClips(SHORT + LONG + LONG)  # 20 clips -> 11 batches an epoch
    one = StepBatches(clips, None, seed=3, max_tokens=MAX_TOKENS)
    assert one.batches_per_epoch == 11
    two = [StepBatches(clips, None, seed=3, rank=rank, world_size=2, max_tokens=MAX_TOKENS) for rank in range(2)]
    accumulated = StepBatches(clips, None, seed=3, max_tokens=MAX_TOKENS, update_freq=2)
    assert one.steps_per_epoch == 11 and two[0].steps_per_epoch == accumulated.steps_per_epoch == 5  # 1 left over
    for step in (0, 4, 5, 9):  # both epochs of the two-batch updates
        epoch, offset = divmod(step, 5)
        for rank in range(2):
            single_step = epoch * 11 + 2 * offset + rank  # one process takes the same batch one step at a time
            expected = one[single_step]
            for other in (two[rank][step], accumulated[2 * step + rank]):
                assert other.keys() == expected.keys()
                for key in expected:  # items, crops and mask seeds
                    assert torch.equal(other[key], expected[key]), key
        assert two[0].update_batches(step)[1].tolist() == two[1][step]["items"].tolist()
    # the union of both ranks over an epoch is the single process's epoch but the one batch left over
    single = {tuple(one[step]["items"].tolist()) for step in range(11)}
    paired = {tuple(half[step]["items"].tolist()) for step in range(5) for half in two}
    assert paired < single and len(single - paired) == 1
    # a restart (a new object) at step k sees the same batch as the run that got there
    for step in (3, 12, 25):
        again = StepBatches(clips, None, seed=3, max_tokens=MAX_TOKENS)[step]
        assert all(torch.equal(again[key], one[step][key]) for key in again)
    assert not torch.equal(StepBatches(clips, None, seed=4, max_tokens=MAX_TOKENS)[0]["mask_seeds"], one[0]["mask_seeds"])


def test_bucket_and_batch_size_settings_are_checked():
    values = tiny_recipe_dict("audio")
    with pytest.raises(RecipeError, match="both size the batches"):
        Recipe.from_dict({**values, "data": {**values["data"], "max_tokens": 8000}})
    with pytest.raises(RecipeError, match="below data.max_sample_size"):
        Recipe.from_dict({**values, "data": {**values["data"], "batch_size": None, "max_tokens": 1000}})
    with pytest.raises(RecipeError, match="data.batch_size must be >= 1"):
        Recipe.from_dict({**values, "data": {**values["data"], "batch_size": None}})
    with pytest.raises(ValueError, match="fewer than the 2 process"):
        StepBatches(SilentClips(LONG[:2]), None, seed=0, world_size=2, max_tokens=MAX_TOKENS)  # one batch only


# ---------------------------------------------------------------------------- require_same_masks
def audio_adapter(require_same_masks: bool):
    values = tiny_recipe_dict("audio")
    values["masking"]["require_same_masks"] = require_same_masks
    adapter = adapter_for(Recipe.from_dict(values))
    adapter.bind(adapter.model_config())
    return adapter


def test_same_masks_give_every_row_of_the_global_batch_the_fewest_count():
    clips = SilentClips([32000] * 16, max_sample_size=32000)  # 99 frames per clip
    same, free = audio_adapter(True), audio_adapter(False)
    whole_free = StepBatches(clips, 8, seed=1, mask_sampler=free.sample_masks)[0]["mask"]
    counts = whole_free.sum(dim=1)
    assert len(set(counts.tolist())) > 1  # without it the rows differ
    whole = StepBatches(clips, 8, seed=1, mask_sampler=same.sample_masks)[0]["mask"]
    assert whole.sum(dim=1).tolist() == [int(counts.min())] * 8
    assert not (whole & ~whole_free).any()  # rows only drop masked frames
    assert torch.equal(whole[counts == counts.min()], whole_free[counts == counts.min()])

    # split over 2 processes or 2 micro-batches (or both): the same masks, with the global minimum
    splits = [
        [StepBatches(clips, 8, seed=1, rank=r, world_size=2, mask_sampler=same.sample_masks)[0] for r in range(2)],
        [StepBatches(clips, 8, seed=1, update_freq=2, mask_sampler=same.sample_masks)[m] for m in range(2)],
        [StepBatches(clips, 8, seed=1, rank=r, world_size=2, update_freq=2, mask_sampler=same.sample_masks)[m]
         for m in range(2) for r in range(2)],
    ]
    for parts in splits:
        assert "group_mask_seeds" not in parts[0]
        assert torch.equal(torch.cat([part["mask"] for part in parts]), whole)


def test_same_masks_in_length_buckets():
    clips = SilentClips([9000 + 300 * i for i in range(12)], max_sample_size=16000)
    same = audio_adapter(True)
    batches = StepBatches(clips, None, seed=2, max_tokens=48000, mask_sampler=same.sample_masks)
    sizes = []
    for step in range(batches.steps_per_epoch):
        mask = batches[step]["mask"]
        sizes.append(mask.shape[0])
        assert len(set(mask.sum(dim=1).tolist())) == 1
    assert sorted(sizes) == [1, 3, 4, 4]  # 48000 // 12300, // 11400, // 10200, and the clip left
    two = [StepBatches(clips, None, seed=2, rank=r, world_size=2, max_tokens=48000, mask_sampler=same.sample_masks)
           for r in range(2)]
    assert torch.equal(two[1][0]["mask"], batches[1]["mask"])

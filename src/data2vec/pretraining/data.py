"""Pretraining data: audio files, images, text blocks, and the batch of every step.

Reproducibility is by construction: the micro-batch ``m`` of update ``s`` on a rank is a pure
function of ``(seed, s, m, rank, world_size, update_freq)``, so resuming needs no sampler state.
An update is ``world_size x update_freq`` batches, chunk ``m * world_size + rank`` on each rank.

- Fixed batches (``data.batch_size``): the order of the items is a permutation drawn from
  ``(seed, epoch)``; update ``s`` takes the next ``batch_size`` items of it (its global batch) and
  cuts them into the chunks. Random crops and flips of the item at position ``p`` of the global
  batch use a generator seeded with ``(seed, s, p)``, and its mask seed comes from the same
  triple; audio crops every item to the shortest clip of the global batch. So N processes, or
  k micro-batches, see exactly the items, crops and masks one process sees for the whole batch.
- Length buckets (audio ``data.max_tokens``, as fairseq): every epoch, the clips are sorted by
  length (longest first, ties in an order drawn from ``(seed, epoch)``) and cut into batches of
  ``n`` clips with ``n x longest <= max_tokens`` (lengths capped at ``max_sample_size``); the
  order of these batches is shuffled with ``(seed, epoch)``. Update ``s`` takes the next
  ``world_size x update_freq`` of them, one per chunk; each is cropped to its own shortest clip.
  The item at position ``p`` of the ``b``-th batch of an epoch draws from ``(seed, epoch, b, p)``,
  so the batches, crops and masks do not depend on the process count or ``update_freq`` either:
  2 processes see together what 1 process sees in two updates (or in one of ``update_freq`` 2).
  The same holds with masks: a batch whose items are split over processes or micro-batches still
  draws its masks as one batch (``group_mask_seeds``, for masks that depend on the whole batch).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TEXT_SUFFIXES = (".txt",)
ARRAY_SUFFIXES = (".npy", ".pt")

DATA_STREAM, MASK_STREAM, BUCKET_STREAM = 0, 1, 2


def item_rng(*key: int) -> np.random.Generator:
    """Random numbers for one item of a batch; ``key`` is ``(seed, step, position)`` (fixed
    batches) or ``(seed, epoch, batch, position)`` (length buckets)."""
    return np.random.default_rng([*key, DATA_STREAM])


def mask_seed(*key: int) -> int:
    """A 63-bit seed for the mask of the item of ``key`` (as ``item_rng``)."""
    state = np.random.SeedSequence([*key, MASK_STREAM]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def files_under(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """Files below ``folder`` (recursively) with one of ``suffixes`` (any case), sorted."""
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() in suffixes)


# ---------------------------------------------------------------------------- audio
class AudioFiles:
    """Waveforms from a fairseq manifest (``.tsv``: the root folder on the first line, then
    ``relative/path<TAB>num_samples``) or from the wav/flac files below a folder.

    A batch crops every file to the same length: the shortest file of its group (the global
    batch, or the length bucket), at most ``max_sample_size`` samples, at a random offset. Files
    shorter than ``min_sample_size`` samples are skipped."""

    def __init__(
        self,
        paths: Sequence[Path],
        lengths: Sequence[int],
        *,
        sampling_rate: int = 16000,
        max_sample_size: int = 320000,
        min_sample_size: int = 0,
        normalize: bool = True,
    ) -> None:
        keep = [index for index, length in enumerate(lengths) if length >= min_sample_size]
        if len(keep) < len(paths):
            logger.warning("skipped %d audio files shorter than %d samples", len(paths) - len(keep), min_sample_size)
        if not keep:
            raise ValueError(
                f"no audio file has the minimum of {min_sample_size} samples (data.min_sample_size): "
                "use longer recordings or lower data.min_sample_size"
            )
        self.paths = [Path(paths[index]) for index in keep]
        self.lengths = np.asarray([int(lengths[index]) for index in keep], dtype=np.int64)
        self.sampling_rate = sampling_rate
        self.max_sample_size = max_sample_size
        self.normalize = normalize

    @classmethod
    def from_source(cls, source: str | os.PathLike, **options) -> AudioFiles:
        source = Path(source)
        if source.is_file() and source.suffix == ".tsv":
            return cls.from_manifest(source, **options)
        if source.is_dir():
            return cls.from_folder(source, **options)
        raise ValueError(
            f"audio data {str(source)!r} is neither a folder of {'/'.join(AUDIO_SUFFIXES)} files nor a "
            "manifest (.tsv: root folder on the first line, then 'relative/path<TAB>num_samples' lines)"
        )

    @classmethod
    def from_manifest(cls, manifest: Path, **options) -> AudioFiles:
        lines = Path(manifest).read_text().splitlines()
        if not lines:
            raise ValueError(f"manifest {str(manifest)!r} is empty: its first line must be the root folder")
        root = Path(lines[0].strip())
        paths, lengths = [], []
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or not fields[1].strip().isdigit():
                raise ValueError(
                    f"{manifest}:{number}: expected 'relative/path<TAB>num_samples', got {line!r}"
                )
            paths.append(root / fields[0])
            lengths.append(int(fields[1]))
        if not paths:
            raise ValueError(f"manifest {str(manifest)!r} lists no audio files")
        return cls(paths, lengths, **options)

    @classmethod
    def from_folder(cls, folder: Path, **options) -> AudioFiles:
        import soundfile

        paths = files_under(folder, AUDIO_SUFFIXES)
        if not paths:
            raise ValueError(f"no {'/'.join(AUDIO_SUFFIXES)} files below {str(folder)!r}")
        rate = options.get("sampling_rate", 16000)
        lengths = []
        for path in paths:
            info = soundfile.info(str(path))
            lengths.append(int(info.frames * rate // info.samplerate))  # after resampling to `rate`
        return cls(paths, lengths, **options)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def crop_lengths(self) -> np.ndarray:
        """(items,) the most samples of each file a batch takes: its length, at most max_sample_size."""
        return np.minimum(self.lengths, self.max_sample_size)

    def load(self, indices: Sequence[int], rngs: Sequence[np.random.Generator], group: Sequence[int]) -> dict:
        from ..audio.features import normalize_utterance
        from ..audio.io import load_audio

        crop = int(self.crop_lengths[np.asarray(group)].min())
        waveforms = []
        for index, rng in zip(indices, rngs):
            waveform = load_audio(self.paths[index], self.sampling_rate)  # (samples,)
            if self.normalize:
                waveform = normalize_utterance(waveform)
            start = int(rng.integers(0, max(len(waveform) - crop, 0) + 1))
            waveforms.append(waveform[start : start + crop])
        shortest = min(len(waveform) for waveform in waveforms)  # a manifest length may be off by a few samples
        input_values = torch.from_numpy(np.stack([waveform[:shortest] for waveform in waveforms]))
        return {"input_values": input_values}  # (batch, samples)


# ---------------------------------------------------------------------------- images
def image_transform(
    image: torch.Tensor,
    size: tuple[int, int],
    rng: np.random.Generator,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    crop_scale: Sequence[float] | None = None,
    horizontal_flip: bool = False,
) -> torch.Tensor:
    """(channels, H, W) float in [0, 1] -> (channels, *size) normalised.

    With ``crop_scale`` a random region of that fraction of the area (aspect ratio 3/4..4/3) is
    cut first; otherwise the shorter side is resized to the target and the centre cut out."""
    _, height, width = image.shape
    if crop_scale is not None:
        top, left, crop_height, crop_width = _random_crop_box(height, width, crop_scale, rng)
    else:
        aspect = size[1] / size[0]
        crop_height, crop_width = (height, min(width, round(height * aspect)))
        if crop_width == width:
            crop_height = min(height, round(width / aspect))
        top, left = (height - crop_height) // 2, (width - crop_width) // 2
    image = image[:, top : top + crop_height, left : left + crop_width]
    if (crop_height, crop_width) != tuple(size):
        image = F.interpolate(image[None], size=size, mode="bicubic", align_corners=False, antialias=True)[0]
        image = image.clamp(0.0, 1.0)
    if horizontal_flip and rng.random() < 0.5:
        image = image.flip(-1)
    mean_tensor = torch.tensor(mean, dtype=image.dtype)[:, None, None]
    std_tensor = torch.tensor(std, dtype=image.dtype)[:, None, None]
    return (image - mean_tensor) / std_tensor


def _random_crop_box(height: int, width: int, scale: Sequence[float], rng: np.random.Generator) -> tuple[int, int, int, int]:
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
        crop_width = int(round(np.sqrt(target * aspect)))
        crop_height = int(round(np.sqrt(target / aspect)))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(rng.integers(0, height - crop_height + 1))
            left = int(rng.integers(0, width - crop_width + 1))
            return top, left, crop_height, crop_width
    side = min(height, width)  # fall back to the centre square
    return (height - side) // 2, (width - side) // 2, side, side


class Images:
    """Images from files below a folder (any depth; class subfolders are ignored) or from an
    in-memory array / tensor ((N, H, W), (N, C, H, W) or (N, H, W, C); uint8 or floats in [0, 1])."""

    def __init__(
        self,
        *,
        paths: Sequence[Path] | None = None,
        array: torch.Tensor | None = None,
        image_size: tuple[int, int],
        num_channels: int = 3,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        crop_scale: Sequence[float] | None = None,
        horizontal_flip: bool = False,
    ) -> None:
        if (paths is None) == (array is None):
            raise ValueError("pass either image file paths or an array of images")
        self.paths = list(paths) if paths is not None else None
        self.array = _as_image_tensor(array) if array is not None else None  # (N, C, H, W)
        self.image_size = image_size
        self.num_channels = num_channels
        if len(mean) != num_channels or len(std) != num_channels:
            raise ValueError(f"data.image_mean and data.image_std need {num_channels} values (one per channel)")
        self.mean, self.std = list(mean), list(std)
        self.crop_scale = crop_scale
        self.horizontal_flip = horizontal_flip

    @classmethod
    def from_source(cls, source, **options) -> Images:
        if isinstance(source, (torch.Tensor, np.ndarray)):
            return cls(array=torch.as_tensor(source), **options)
        source = Path(source)
        if source.is_file() and source.suffix in ARRAY_SUFFIXES:
            array = np.load(source) if source.suffix == ".npy" else torch.load(source, weights_only=True)
            return cls(array=torch.as_tensor(array), **options)
        if source.is_dir():
            paths = files_under(source, IMAGE_SUFFIXES)
            if not paths:
                raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) below {str(source)!r}")
            return cls(paths=paths, **options)
        raise ValueError(
            f"image data {str(source)!r} is neither a folder of images nor an array file ({'/'.join(ARRAY_SUFFIXES)})"
        )

    def __len__(self) -> int:
        return len(self.paths) if self.paths is not None else len(self.array)

    def _read(self, index: int) -> torch.Tensor:
        """(C, H, W) float in [0, 1]."""
        if self.array is not None:
            image = self.array[index]
        else:
            from PIL import Image

            with Image.open(self.paths[index]) as file:
                pixels = np.asarray(file.convert("RGB" if self.num_channels == 3 else "L"))
            image = _as_image_tensor(torch.from_numpy(pixels.copy())[None])[0]
        if image.shape[0] == 1 and self.num_channels == 3:
            image = image.expand(3, -1, -1)
        if image.shape[0] != self.num_channels:
            raise ValueError(f"image {index} has {image.shape[0]} channels, the model expects {self.num_channels}")
        return image

    def load(self, indices: Sequence[int], rngs: Sequence[np.random.Generator], group: Sequence[int]) -> dict:
        images = [
            image_transform(
                self._read(index), self.image_size, rng, mean=self.mean, std=self.std,
                crop_scale=self.crop_scale, horizontal_flip=self.horizontal_flip,
            )
            for index, rng in zip(indices, rngs)
        ]
        return {"pixel_values": torch.stack(images).float()}  # (batch, channels, height, width)


def _as_image_tensor(array: torch.Tensor) -> torch.Tensor:
    """(N, H, W) / (N, C, H, W) / (N, H, W, C) uint8 or float -> (N, C, H, W) float32 in [0, 1]."""
    array = torch.as_tensor(array)
    if array.dim() == 3:
        array = array[:, None]
    elif array.dim() == 4 and array.shape[-1] in (1, 3, 4) and array.shape[1] not in (1, 3, 4):
        array = array.permute(0, 3, 1, 2)
    if array.dim() != 4:
        raise ValueError(f"images must be (N, H, W), (N, C, H, W) or (N, H, W, C), got shape {tuple(array.shape)}")
    if array.shape[1] == 4:
        array = array[:, :3]  # drop alpha
    if array.dtype == torch.uint8:
        return array.float() / 255.0
    array = array.float()
    if array.numel() and (float(array.min()) < 0.0 or float(array.max()) > 1.0):
        raise ValueError("float images must lie in [0, 1] (or pass uint8 images in [0, 255])")
    return array


# ---------------------------------------------------------------------------- text
def read_paragraphs(source) -> list[str]:
    """Paragraphs (split at blank lines, whitespace collapsed) of a .txt file, of every .txt file
    below a folder, or of a list of strings."""
    if isinstance(source, (list, tuple)):
        texts = [str(text) for text in source]
    else:
        source = Path(source)
        if source.is_file():
            files = [source]
        elif source.is_dir():
            files = files_under(source, TEXT_SUFFIXES)
        else:
            files = []
        if not files:
            raise ValueError(f"text data {str(source)!r} is neither a text file nor a folder with .txt files")
        texts = [file.read_text(encoding="utf-8", errors="replace") for file in files]
    paragraphs = []
    for text in texts:
        for block in re.split(r"\n\s*\n", text):
            block = " ".join(block.split())
            if block:
                paragraphs.append(block)
    if not paragraphs:
        raise ValueError("the text data is empty")
    return paragraphs


class TextBlocks:
    """Token blocks ``<s> ... </s>`` of ``tokens_per_sample`` ids cut from the concatenated
    paragraphs (each paragraph ends with ``</s>``)."""

    def __init__(self, blocks: torch.Tensor) -> None:
        self.blocks = blocks  # (num_blocks, tokens_per_sample) int64

    @classmethod
    def from_paragraphs(cls, paragraphs: Sequence[str], tokenizer, tokens_per_sample: int) -> TextBlocks:
        stream: list[int] = []
        for ids in tokenizer(list(paragraphs), add_special_tokens=False)["input_ids"]:
            stream.extend(ids)
            stream.append(tokenizer.eos_token_id)
        body = tokens_per_sample - 2
        rows = [
            [tokenizer.bos_token_id, *stream[start : start + body], tokenizer.eos_token_id]
            for start in range(0, len(stream) - body + 1, body)
        ]
        if not rows:
            raise ValueError(
                f"the text gives {len(stream)} tokens, fewer than one block of data.tokens_per_sample="
                f"{tokens_per_sample}: add text or lower tokens_per_sample"
            )
        return cls(torch.tensor(rows, dtype=torch.long))

    def __len__(self) -> int:
        return len(self.blocks)

    def load(self, indices: Sequence[int], rngs: Sequence[np.random.Generator], group: Sequence[int]) -> dict:
        return {"input_ids": self.blocks[torch.as_tensor(np.asarray(indices), dtype=torch.long)]}  # (batch, tokens)


# ---------------------------------------------------------------------------- batches of steps
def length_buckets(lengths: np.ndarray, max_tokens: int) -> list[tuple[int, int]]:
    """Cut ``lengths`` (sorted longest first) into runs ``[start, stop)`` of ``n`` items with
    ``n x lengths[start] <= max_tokens`` (at least one item each), filled greedily in order."""
    bounds, start = [], 0
    while start < len(lengths):
        count = max(1, int(max_tokens) // int(lengths[start]))
        bounds.append((start, min(start + count, len(lengths))))
        start += count
    return bounds


class StepBatches(torch.utils.data.Dataset):
    """``batches[step * update_freq + micro]`` = this rank's ``micro``-th micro-batch of update
    ``step`` (``batches[step]`` when ``update_freq`` is 1): a dict of tensors plus ``mask_seeds``
    (batch,) int64, and what ``mask_sampler(batch)`` adds (the masks, sampled here so that
    DataLoader workers do it). Use with a DataLoader(batch_size=None).

    An update is ``world_size x update_freq`` chunks; rank ``r`` loads chunk ``micro * world_size
    + r`` as its micro-batch ``micro``. With ``global_batch_size`` they are equal slices of the
    update's global batch; with ``max_tokens`` (the dataset gives ``crop_lengths``) each is a
    length bucket of its own (see the module docstring). When a chunk is part of a larger group
    (a slice of the global batch), the mask sampler also sees ``group_mask_seeds``: the mask seeds
    of the whole group, in order, so that masks that depend on the whole batch (audio's
    ``require_same_masks``) do not depend on the split."""

    def __init__(
        self,
        dataset,
        global_batch_size: int | None,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        mask_sampler: Callable[[dict], dict] | None = None,
        *,
        update_freq: int = 1,
        max_tokens: int | None = None,
    ) -> None:
        if update_freq < 1:
            raise ValueError(f"update_freq must be >= 1, got {update_freq}")
        self.dataset = dataset
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.update_freq = update_freq
        self.chunks = world_size * update_freq  # batches (or slices of the global batch) per update
        self.mask_sampler = mask_sampler
        self.max_tokens = max_tokens
        self._order: tuple[int, np.ndarray] | None = None
        self._buckets: tuple[int, list[np.ndarray]] | None = None
        if max_tokens is None:
            self._check_batch_size(global_batch_size)
            self.global_batch_size = global_batch_size
            self.local_batch_size = global_batch_size // self.chunks
            self.steps_per_epoch = len(dataset) // global_batch_size  # the last partial batch is dropped
        else:
            lengths = np.asarray(dataset.crop_lengths)
            if int(lengths.max()) > max_tokens:
                raise ValueError(
                    f"data.max_tokens={max_tokens} is below the longest crop ({int(lengths.max())} samples): "
                    "raise max_tokens or lower data.max_sample_size"
                )
            self.global_batch_size = self.local_batch_size = None
            # the same every epoch: the cut depends only on the sorted lengths
            self.batches_per_epoch = len(length_buckets(np.sort(lengths)[::-1], max_tokens))
            self.steps_per_epoch = self.batches_per_epoch // self.chunks  # the last batches of an epoch may be left
            if self.steps_per_epoch == 0:
                raise ValueError(
                    f"the data fills {self.batches_per_epoch} batches of data.max_tokens={max_tokens} samples, fewer "
                    f"than the {world_size} process(es) x optim.update_freq {update_freq} of one update: add data or "
                    "lower max_tokens"
                )

    def _check_batch_size(self, global_batch_size: int | None) -> None:
        if global_batch_size is None:
            raise ValueError("pass a global batch size (data.batch_size) or max_tokens (data.max_tokens)")
        if global_batch_size % self.chunks:
            accumulation = f" x optim.update_freq {self.update_freq}" if self.update_freq > 1 else ""
            raise ValueError(
                f"data.batch_size={global_batch_size} is not divisible by the {self.world_size} processes"
                f"{accumulation}: choose a batch size that is a multiple of {self.chunks}"
            )
        if len(self.dataset) < global_batch_size:
            raise ValueError(
                f"the data has {len(self.dataset)} items, fewer than one batch of data.batch_size={global_batch_size}: "
                "add data or lower the batch size"
            )

    def order(self, epoch: int) -> np.ndarray:
        """The item order of ``epoch`` (fixed batches): a permutation that depends only on (seed, epoch)."""
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset)))
        return self._order[1]

    def buckets(self, epoch: int) -> list[np.ndarray]:
        """The length-bucketed batches of ``epoch`` (item indices), in the epoch's order: a
        function of (seed, epoch) and the clip lengths only."""
        if self._buckets is None or self._buckets[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, BUCKET_STREAM])
            lengths = np.asarray(self.dataset.crop_lengths)
            order = np.lexsort((rng.permutation(len(lengths)), -lengths))  # longest first, ties at random
            batches = [order[start:stop] for start, stop in length_buckets(lengths[order], self.max_tokens)]
            self._buckets = (epoch, [batches[index] for index in rng.permutation(len(batches))])
        return self._buckets[1]

    def global_indices(self, step: int) -> np.ndarray:
        """The items of update ``step``: its global batch, or its batches one after the other."""
        return np.concatenate(self.update_batches(step))

    def update_batches(self, step: int) -> list[np.ndarray]:
        """The items of the ``world_size x update_freq`` chunks of update ``step``, chunk by chunk."""
        if self.max_tokens is not None:
            epoch, offset = divmod(step, self.steps_per_epoch)
            return self.buckets(epoch)[offset * self.chunks : (offset + 1) * self.chunks]
        return np.split(self._global_batch(step), self.chunks)

    def _global_batch(self, step: int) -> np.ndarray:
        epoch, offset = divmod(step, self.steps_per_epoch)
        start = offset * self.global_batch_size
        return self.order(epoch)[start : start + self.global_batch_size]

    def __len__(self) -> int:
        return 2**62  # any micro-batch of any step; the sampler chooses which

    def __getitem__(self, index: int) -> dict:
        step, micro = divmod(index, self.update_freq)
        chunk = micro * self.world_size + self.rank
        if self.max_tokens is None:
            group = self._global_batch(step)
            positions = range(chunk * self.local_batch_size, (chunk + 1) * self.local_batch_size)
            keys = [(self.seed, step, p) for p in positions]
            group_keys = [(self.seed, step, p) for p in range(len(group))]
            indices = [int(group[p]) for p in positions]
        else:
            epoch, offset = divmod(step, self.steps_per_epoch)
            number = offset * self.chunks + chunk  # the bucket's place in the epoch
            group = self.buckets(epoch)[number]
            keys = group_keys = [(self.seed, epoch, number, p) for p in range(len(group))]
            indices = [int(item) for item in group]
        batch = self.dataset.load(indices, [item_rng(*key) for key in keys], group)
        batch["mask_seeds"] = torch.tensor([mask_seed(*key) for key in keys], dtype=torch.long)
        if self.mask_sampler is not None:
            view = batch
            if len(group_keys) > len(keys):
                group_seeds = torch.tensor([mask_seed(*key) for key in group_keys], dtype=torch.long)
                view = {**batch, "group_mask_seeds": group_seeds}
            batch.update(self.mask_sampler(view))
        return batch


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave Ctrl-C / SIGTERM to the training process, which stops them after
    saving (they exit on their own when it is gone)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def step_loader(
    batches: StepBatches, first_step: int, last_step: int, num_workers: int = 0, pin_memory: bool = False
) -> torch.utils.data.DataLoader:
    """The micro-batches of steps ``first_step .. last_step - 1`` in order (``update_freq`` per step)."""
    return torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        sampler=range(first_step * batches.update_freq, last_step * batches.update_freq),
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=_ignore_stop_signals,
        persistent_workers=False,
        # its own generator: making an iterator draws a seed, which must not move the global
        # random state (dropout) or a resumed run would differ from an uninterrupted one
        generator=torch.Generator().manual_seed(0),
    )


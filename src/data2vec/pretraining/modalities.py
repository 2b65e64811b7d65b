"""The only modality-specific code of pretraining: one small adapter per modality.

A modality is a ``data2vec.registry.ModalitySpec``; its ``adapter`` (a ``ModalityAdapter``
subclass) knows, for the spec's backbone:
- how to build it from the recipe (and from facts of the data, e.g. the text vocabulary),
- how to read the data (``build_dataset``),
- how to mask a batch: ``sample_masks(batch)`` (on the CPU, inside the data loader's workers)
  adds ``mask`` (batch, positions), True where the loss is taken, and whatever masked input
  the student needs; ``model_inputs(batch) -> (student_inputs, teacher_inputs, mask)``,
- which of the backbone's output positions are the masked ones (``positions``: vision drops CLS),
- which files besides the weights an exported backbone folder needs.

The rest is shared: the student's final states, and the teacher's top-K layer outputs
(``forward_intermediates`` of the backbone, block or feed-forward outputs as the recipe says).

data2vec 2.0 (``recipe.version == 2``) asks two more things of an adapter: the shape of the
positions a mask covers (``mask_grid``: frames, tokens, or the patch grid) and the student's
embedding for the masked versions (``embed_clones``: once per sample; audio, which puts the mask
embedding in before its positional convolution, once per masked version). Masks of 2.0 are ``sample_clone_masks``:
(batch, clones, positions), drawn with the same per-item seeds.

``positions`` are frames (audio), patches without CLS (vision) or tokens (text). Masks are
sampled per item from the item's ``mask_seeds`` entry (``per_item_masks``), so they do not depend
on how the global batch is split across processes or micro-batches; a mask that depends on the
whole batch (audio's ``require_same_masks``) reads the group's seeds (``group_mask_seeds``).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.modeling import Embedded
from ..registry import get_modality
from .recipe import Recipe, RecipeError

logger = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]


def item_generators(batch: Batch) -> list[torch.Generator]:
    """One CPU generator per item of ``batch``, seeded from the item's ``mask_seeds`` entry."""
    return [torch.Generator().manual_seed(int(seed)) for seed in batch["mask_seeds"].tolist()]


def per_item_masks(batch: Batch, draw: Callable[[torch.Generator], torch.Tensor]) -> torch.Tensor:
    """``draw(generator)`` -> (1, positions), once per item of ``batch`` with the item's generator
    (``item_generators``); concatenated to (batch, positions)."""
    return torch.cat([draw(generator) for generator in item_generators(batch)])


def _check_model_keys(recipe: Recipe, config_class) -> None:
    unknown = sorted(set(recipe.model) - config_class.field_names() - {"num_labels"})
    if unknown:
        raise RecipeError(
            f"model keys {unknown} are not keys of {config_class.__name__}: check the spelling "
            "(the model section takes the backbone's config.json keys)"
        )


class ModalityAdapter:
    """Shared plumbing; subclasses fill in the modality. The config and backbone classes and the
    mask sampler come from the recipe's modality spec in ``data2vec.registry``."""

    input_name = ""  # the batch entry (and backbone argument) that holds the input
    mask_argument = ""  # the backbone argument that takes the student's mask
    extra_tokens = 0  # tokens the backbone puts before the masked positions (vision: CLS)
    mask_dims = 1  # 2.0: the positions form a sequence (1) or a grid (2)
    model_inits: tuple[str, ...] = ("default",)  # the recipe's model_init values build_backbone knows

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.spec = get_modality(recipe.modality)
        self.config_class = self.spec.config_class
        self.backbone_class = self.spec.backbone_class
        self.sampler = self.spec.sampler_function  # the mask sampler sample_masks draws with
        _check_model_keys(recipe, self.config_class)
        if recipe.model_init not in self.model_inits:
            raise RecipeError(
                f"model_init {recipe.model_init!r} is not available for {recipe.modality}: "
                f"use one of {list(self.model_inits)}"
            )
        self.extras: dict[str, Any] = {}  # saved in checkpoints (e.g. the tokenizer files)

    # -- building
    def build_dataset(self, source, work_dir: Path, *, is_main: bool = True, barrier: Callable[[], None] = lambda: None):
        """The items: ``len(dataset)`` and ``dataset.load(indices, rngs, group) -> dict`` of CPU
        tensors (see ``pretraining.data``)."""
        raise NotImplementedError

    def model_config(self):
        """The backbone config: the recipe's model section, completed with facts of the data."""
        return self.config_class(**self.recipe.model)

    def build_backbone(self, config) -> nn.Module:
        return self.backbone_class(config)

    def may_skip_parameters(self, config) -> bool:
        """True when some parameters may get no gradient in a step (DDP must then look for them)."""
        return False

    def bind(self, config) -> None:
        """Use ``config`` (the built backbone's) for masking shapes and vocabulary."""
        self._config = config

    # -- one step
    def sample_masks(self, batch: Batch) -> Batch:
        """CPU tensors to add to ``batch``: at least ``mask`` (batch, positions) bool."""
        raise NotImplementedError

    def model_inputs(self, batch: Batch) -> tuple[Batch, Batch, torch.Tensor]:
        """(student inputs, teacher inputs, mask) of a masked batch: both see ``batch[input_name]``,
        the student also the mask as its ``mask_argument``."""
        if not (self.input_name and self.mask_argument):
            raise NotImplementedError(f"{type(self).__name__} must set input_name and mask_argument or define model_inputs")
        inputs, mask = batch[self.input_name], batch["mask"]
        return {self.input_name: inputs, self.mask_argument: mask}, {self.input_name: inputs}, mask

    def batch_seconds(self, batch: Batch) -> float | None:
        """Seconds of input in ``batch`` (audio), None where the modality has no duration."""
        return None

    def positions(self, states: torch.Tensor) -> torch.Tensor:
        """The backbone's (batch, sequence, hidden) states -> (batch, positions, hidden): the positions
        ``mask`` indexes (all of them unless the backbone adds tokens, like vision's CLS)."""
        return states

    def student_states(self, student: nn.Module, inputs: Batch) -> torch.Tensor:
        """The student's final states (batch, positions, hidden)."""
        return self.positions(student(**inputs).last_hidden_state)

    def teacher_layers(self, teacher: nn.Module, inputs: Batch) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The teacher's top-K layer outputs [(batch, positions, hidden)], lowest first, and a padding
        mask (or None): block outputs or feed-forward outputs (before residual and norm) as the
        recipe's ``targets.layer_output`` says."""
        targets = self.recipe.targets
        output = teacher.forward_intermediates(**inputs, indices=range(-targets.top_k, 0), kind=targets.layer_output)
        return [self.positions(layer) for layer in output.intermediates], None

    # -- data2vec 2.0
    def mask_grid(self, batch: Batch) -> tuple[int, ...]:
        """The positions a mask covers: (length,) for a sequence, (rows, columns) for a patch grid."""
        raise NotImplementedError

    def sample_clone_masks(self, batch: Batch) -> Batch:
        """data2vec 2.0 masks: ``mask`` (batch, clones, positions) bool, each item's ``clones`` masks
        drawn from its own generator; every mask hides the same number of positions."""
        from .masking import block_mask_1d, centered_block_mask_2d, random_mask

        masking = self.recipe.masking
        grid = self.mask_grid(batch)
        clones = masking.clones

        def draw(generator: torch.Generator) -> torch.Tensor:  # (clones, positions)
            if len(grid) == 2:
                return centered_block_mask_2d(
                    clones, *grid, masking.mask_prob, masking.mask_length,
                    mask_prob_adjust=masking.mask_prob_adjust, inverse=masking.inverse, generator=generator,
                )  # fmt: skip
            if masking.mask_length == 1:
                return random_mask(clones, grid[0], masking.mask_prob, generator=generator)
            return block_mask_1d(
                clones, grid[0], masking.mask_prob, masking.mask_length,
                mask_prob_adjust=masking.mask_prob_adjust, generator=generator,
            )  # fmt: skip

        return {"mask": torch.stack([draw(generator) for generator in item_generators(batch)])}

    def clone_inputs(self, batch: Batch) -> tuple[Batch, Batch, torch.Tensor]:
        """(student inputs, teacher inputs, masks (batch * clones, positions)) of a 2.0 batch: both
        see the unmasked input; the student drops the masked positions after ``embed_clones``."""
        inputs = {self.input_name: batch[self.input_name]}
        return inputs, inputs, batch["mask"].flatten(0, 1)

    def embed_clones(self, backbone: nn.Module, inputs: Batch, mask: torch.Tensor):
        """The student's ``Embedded`` for the masked versions (mask: (rows, positions), rows = samples x
        clones, sample-major), all positions still there: one row per sample when the embedding does
        not depend on the mask (it then serves every clone), or one per row of ``mask``."""
        return backbone.embed(**inputs)

    # -- export
    def export_backbone(self, config) -> tuple[nn.Module, tuple[str, ...]]:
        """The backbone to export and the prefixes of its weights that pretraining does not train."""
        return self.build_backbone(config), ()

    def export_extras(self, directory: Path, extras: dict[str, Any]) -> None:
        """Write preprocessing files next to the exported weights."""


# ---------------------------------------------------------------------------- audio
class AudioAdapter(ModalityAdapter):
    input_name, mask_argument = "input_values", "mask_time_indices"

    def model_config(self):
        config = super().model_config()
        if config.mask_time_prob <= 0 or not config.apply_spec_augment:
            raise RecipeError(
                "the audio student needs its learned mask embedding: set model.mask_time_prob > 0 (e.g. 0.05, "
                "as the released checkpoints; pretraining masks with the masking section) and apply_spec_augment true"
            )
        if config.mask_feature_prob > 0:
            logger.warning("model.mask_feature_prob > 0: the student also zeroes random channels while pretraining")
        return config

    def build_dataset(self, source, work_dir, *, is_main=True, barrier=lambda: None):
        from .data import AudioFiles

        data = self.recipe.data
        return AudioFiles.from_source(
            source,
            sampling_rate=data.sampling_rate,
            max_sample_size=data.max_sample_size,
            min_sample_size=data.min_sample_size,
            normalize=data.normalize,
        )

    def may_skip_parameters(self, config) -> bool:
        return config.layerdrop > 0

    def sample_masks(self, batch):
        from ..audio.feature_encoder import feature_encoder_output_length
        from .masking import keep_masked

        masking = self.recipe.masking
        frames = int(feature_encoder_output_length(batch["input_values"].shape[1], self._config))

        def draw(generator):  # (1, frames)
            return self.sampler(
                1, frames, masking.mask_prob, masking.mask_length, min_masks=masking.min_masks, generator=generator
            )

        generators = item_generators(batch)
        mask = torch.cat([draw(generator) for generator in generators])  # (batch, frames)
        if masking.require_same_masks:
            if "group_mask_seeds" in batch:  # a slice of a global batch: the fewest of the whole batch
                group = batch["group_mask_seeds"].tolist()
                fewest = min(int(draw(torch.Generator().manual_seed(seed)).sum()) for seed in group)
            else:
                fewest = int(mask.sum(dim=1).min())
            mask = keep_masked(mask, fewest, generators)  # the generators go on after each row's draw
        return {"mask": mask}  # (batch, frames)

    def mask_grid(self, batch):
        from ..audio.feature_encoder import feature_encoder_output_length

        return (int(feature_encoder_output_length(batch["input_values"].shape[1], self._config)),)

    def embed_clones(self, backbone, inputs, mask):
        # the conv feature encoder once per sample; the masked frames become the mask embedding
        # before the positional convolution, as the 1.0 student sees them
        hidden_states, _ = backbone.local_features(inputs["input_values"].to(backbone.dtype))
        hidden_states = hidden_states.repeat_interleave(mask.shape[0] // hidden_states.shape[0], 0)
        return Embedded(backbone.contextualize_frames(hidden_states, mask_time_indices=mask))

    def batch_seconds(self, batch):
        samples = batch["input_values"].shape[0] * batch["input_values"].shape[1]
        return samples / self.recipe.data.sampling_rate

    def export_extras(self, directory, extras):
        from ..audio.features import Data2VecAudioFeatureExtractor

        Data2VecAudioFeatureExtractor(sampling_rate=self.recipe.data.sampling_rate).save_pretrained(directory)


# ---------------------------------------------------------------------------- vision
class VisionAdapter(ModalityAdapter):
    input_name, mask_argument = "pixel_values", "bool_masked_pos"
    model_inits = ("default", "beit")
    extra_tokens, mask_dims = 1, 2

    def build_backbone(self, config):
        backbone = super().build_backbone(config)
        if self.recipe.model_init == "beit":  # the released image pretraining's initialisation
            from ..vision.model import init_for_pretraining

            init_for_pretraining(backbone)
        return backbone

    def model_config(self):
        config = super().model_config()
        if self.recipe.version == 2:
            return config  # 2.0 drops the masked patches: no mask token
        if not config.use_mask_token:
            raise RecipeError("the vision student replaces masked patches by its mask token: set model.use_mask_token: true")
        rows, columns = config.patch_grid
        if self.recipe.masking.num_masking_patches > rows * columns:
            raise RecipeError(
                f"masking.num_masking_patches={self.recipe.masking.num_masking_patches} exceeds the "
                f"{rows}x{columns} patch grid"
            )
        return config

    def build_dataset(self, source, work_dir, *, is_main=True, barrier=lambda: None):
        from ..vision.config import as_pair
        from .data import Images

        data, model = self.recipe.data, self.recipe.model
        return Images.from_source(
            source,
            image_size=as_pair(model.get("image_size", 224), "image_size"),
            num_channels=model.get("num_channels", 3),
            mean=data.image_mean,
            std=data.image_std,
            crop_scale=data.crop_scale,
            horizontal_flip=data.horizontal_flip,
        )

    def sample_masks(self, batch):
        masking = self.recipe.masking
        rows, columns = self._config.patch_grid
        mask = per_item_masks(
            batch,
            lambda generator: self.sampler(
                1, rows, columns, masking.num_masking_patches,
                min_num_patches=masking.min_num_patches, max_num_patches=masking.max_num_patches,
                min_aspect=masking.min_aspect, max_aspect=masking.max_aspect, generator=generator,
            ),
        )
        return {"mask": mask}  # (batch, patches)

    def mask_grid(self, batch):
        return tuple(self._config.patch_grid)

    def positions(self, states):
        return states[:, 1:]  # (batch, patches, hidden): CLS dropped

    def export_extras(self, directory, extras):
        from ..vision.config import as_pair
        from ..vision.image_processor import Data2VecVisionImageProcessor

        if self.recipe.model.get("num_channels", 3) != 3:
            return  # the image processor (like the reference's) makes RGB images only
        height, width = as_pair(self.recipe.model.get("image_size", 224), "image_size")
        Data2VecVisionImageProcessor(
            size={"height": height, "width": width},
            image_mean=self.recipe.data.image_mean,
            image_std=self.recipe.data.image_std,
        ).save_pretrained(directory)


# ---------------------------------------------------------------------------- text
TOKENIZER_FOLDER = "tokenizer"


class TextAdapter(ModalityAdapter):
    input_name = "input_ids"

    def __init__(self, recipe: Recipe) -> None:
        super().__init__(recipe)
        self.tokenizer = None

    def build_dataset(self, source, work_dir, *, is_main=True, barrier=lambda: None):
        from ..text.tokenizer import Data2VecTextTokenizer
        from ..text.vocabulary import train_tokenizer
        from .data import TextBlocks, read_paragraphs

        data = self.recipe.data
        paragraphs = read_paragraphs(source)
        if self.extras.get("tokenizer_files"):  # resuming: the checkpoint's own tokenizer
            self.restore_tokenizer(self.extras)
        elif data.tokenizer is not None:
            self.tokenizer = Data2VecTextTokenizer.from_pretrained(data.tokenizer)
        else:
            folder = Path(work_dir) / TOKENIZER_FOLDER
            if is_main and not (folder / "vocab.json").is_file():
                logger.info("training a byte-level BPE vocabulary of %d tokens in %s", data.vocab_size, folder)
                train_tokenizer(paragraphs, folder, vocab_size=data.vocab_size)
            barrier()
            self.tokenizer = Data2VecTextTokenizer.from_pretrained(folder)
        with tempfile.TemporaryDirectory() as scratch:  # keep the tokenizer files inside checkpoints
            self.tokenizer.save_pretrained(scratch)
            self.extras["tokenizer_files"] = {
                file.name: file.read_text(encoding="utf-8") for file in sorted(Path(scratch).iterdir()) if file.is_file()
            }
        return TextBlocks.from_paragraphs(paragraphs, self.tokenizer, data.tokens_per_sample)

    def model_config(self):
        tokenizer = self.tokenizer
        overrides = {}
        if tokenizer is not None:
            overrides = {
                "vocab_size": len(tokenizer),
                "pad_token_id": tokenizer.pad_token_id,
                "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id,
            }
            if self.recipe.model.get("vocab_size") not in (None, len(tokenizer)):
                logger.info("model.vocab_size set to the tokenizer's %d tokens", len(tokenizer))
        config = self.config_class(**{**self.recipe.model, **overrides})
        longest = self.recipe.data.tokens_per_sample + (config.pad_token_id or 0) + 1
        if longest > config.max_position_embeddings:
            raise RecipeError(
                f"blocks of data.tokens_per_sample={self.recipe.data.tokens_per_sample} tokens need "
                f"max_position_embeddings >= {longest} (positions start after the padding id): raise "
                "model.max_position_embeddings or lower tokens_per_sample"
            )
        return config

    def sample_masks(self, batch):
        tokenizer, masking = self.tokenizer, self.recipe.masking
        input_ids = batch["input_ids"]
        special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=input_ids.dtype)
        masked_rows, mask_rows = [], []
        for row, generator in zip(input_ids, item_generators(batch)):
            row = row[None]
            masked, mask = self.sampler(
                row,
                special_tokens_mask=torch.isin(row, special_ids),
                mask_token_id=tokenizer.mask_token_id,
                vocab_size=self._config.vocab_size,
                mask_prob=masking.mask_prob,
                mode=masking.mode,
                mask_multiple_length=masking.mask_multiple_length,
                random_token_prob=masking.random_token_prob,
                leave_unmasked_prob=masking.leave_unmasked_prob,
                special_token_ids=special_ids.tolist(),
                generator=generator,
            )
            masked_rows.append(masked)
            mask_rows.append(mask)
        return {"mask": torch.cat(mask_rows), "masked_input_ids": torch.cat(masked_rows)}  # (batch, tokens) each

    def model_inputs(self, batch):
        return {"input_ids": batch["masked_input_ids"]}, {"input_ids": batch["input_ids"]}, batch["mask"]

    def mask_grid(self, batch):
        return (batch["input_ids"].shape[1],)

    def build_backbone(self, config):
        return self.backbone_class(config, add_pooling_layer=False)

    def export_backbone(self, config):
        # With its (untrained, freshly initialised) pooler, so that the default Data2VecTextModel
        # of either library finds every weight; sequence-classification heads do not use it.
        return self.backbone_class(config, add_pooling_layer=True), ("pooler.",)

    def export_extras(self, directory, extras):
        for name, text in (extras.get("tokenizer_files") or {}).items():
            (Path(directory) / name).write_text(text, encoding="utf-8")

    def bind(self, config) -> None:
        super().bind(config)
        if self.tokenizer is None and self.extras.get("tokenizer_files"):
            self.restore_tokenizer(self.extras)

    def restore_tokenizer(self, extras: dict[str, Any]) -> None:
        from ..text.tokenizer import Data2VecTextTokenizer

        with tempfile.TemporaryDirectory() as scratch:
            self.export_extras(Path(scratch), extras)
            self.tokenizer = Data2VecTextTokenizer.from_pretrained(scratch)


def adapter_for(recipe: Recipe) -> ModalityAdapter:
    """The adapter of the recipe's modality (its spec in ``data2vec.registry``)."""
    return get_modality(recipe.modality).adapter_class(recipe)

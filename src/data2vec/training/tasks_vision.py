"""Fine-tuning tasks of data2vec-vision: image classification and semantic segmentation.

Data:

- ``image-classification``: an ImageFolder, ``root/<class>/<image>`` (``training.data.read_image_folder``);
  the sorted class-folder names of the training data become ``id2label`` (a new head when they
  differ from the checkpoint's).
- ``semantic-segmentation``: ``root/images/<stem>.<ext>`` and ``root/masks/<stem>.png``
  (``training.data.read_segmentation_folder``); a mask is a grayscale ("L") or palette ("P")
  PNG of the image's size whose pixel values are class ids, 255 = ignored.

Images go through the checkpoint's image processor (``preprocessor_config.json``: resize, center
crop, rescale, normalise); a checkpoint without one (e.g. a backbone from ``data2vec
export-backbone``) gets the default processor at the model's ``image_size``, which is saved with
the model. The ``image_size`` option resizes (and center-crops) to another square size; images
of a size other than the model's ``image_size`` are then fed with ``interpolate_pos_encoding``
(a non-tensor entry of the batch). No augmentation is applied. Evaluation runs the model in
eval mode without gradients, in batches of the ``eval_batch_size`` option (else
``batch_size``, else 8), on the model's device.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import nn

from . import data, metrics
from .data import DataError
from .tasks import (
    Prepared,
    Task,
    accuracy_of,
    batch_outputs,
    eval_batch_size,
    load_model,
    register,
    saver,
    without_labels,
)

VISION = "data2vec-vision"
DEFAULT_EVAL_BATCH_SIZE = 8
IGNORE_INDEX = 255  # mask value of pixels that are not scored
SEGMENTATION_CLASS = "Data2VecVisionForSemanticSegmentation"


def load_image_processor(model_source: str | Path, config: Any, options: dict[str, Any]) -> Any:
    """The checkpoint's ``Data2VecVisionImageProcessor``, or the default one at
    ``config.image_size`` (with a warning); the ``image_size`` option replaces its output size."""
    from ..auto import PREPROCESSOR_CONFIG_NAME, PROCESSOR_CONFIG_NAME, AutoProcessor
    from ..core.preprocessing import PretrainedFiles
    from ..vision.image_processor import Data2VecVisionImageProcessor

    files = PretrainedFiles(model_source)
    if files.find_optional(PREPROCESSOR_CONFIG_NAME) is None and files.find_optional(PROCESSOR_CONFIG_NAME) is None:
        warnings.warn(
            f"{model_source} has no {PREPROCESSOR_CONFIG_NAME}: using the default image processor at "
            f"{config.image_size}x{config.image_size} pixels; it is saved with the model",
            UserWarning,
            stacklevel=3,
        )
        processor = Data2VecVisionImageProcessor(size=config.image_size, crop_size=config.image_size)
    else:
        processor = AutoProcessor.from_pretrained(model_source)
    image_size = options.get("image_size")
    if image_size is not None:
        processor = Data2VecVisionImageProcessor.from_dict(
            processor.to_dict(), size=int(image_size), crop_size=int(image_size)
        )
    return processor


def _model_inputs(processor: Any, config: Any) -> dict[str, Any]:
    """Extra forward arguments: ``interpolate_pos_encoding`` when the processor's output size is
    not the model's ``image_size``."""
    output = processor.crop_size if processor.do_center_crop else processor.size
    if (output["height"], output["width"]) != (config.image_size, config.image_size):
        return {"interpolate_pos_encoding": True}
    return {}


def _shown(names: Sequence[str], limit: int = 10) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


# ---------------------------------------------------------------------------- classification


class ImageClassificationTask(Task):
    """``image-classification`` on an ImageFolder. Metric: ``accuracy``."""

    def read(self, path: str | Path, options: dict[str, Any]) -> list[dict]:
        return data.read_image_folder(path)

    def prepare(self, model_source: str | Path, train_examples: list[dict], options: dict[str, Any]) -> Prepared:
        model = load_model(self, model_source, data.label_set(example["label"] for example in train_examples))
        processor = load_image_processor(model_source, model.config, options)
        extra = _model_inputs(processor, model.config)
        label2id = {str(name): int(index) for name, index in model.config.label2id.items()}
        batch_size = eval_batch_size(options, DEFAULT_EVAL_BATCH_SIZE)

        def class_ids(examples: list[dict]) -> torch.Tensor:
            ids = []
            for example in examples:
                label = str(example["label"])
                if label not in label2id:
                    raise DataError(
                        f"{example['path']}: class {label!r} (its folder) is not one of the {len(label2id)} classes "
                        f"of the training data ({_shown(list(label2id))}); move the image or add the class to the "
                        "training data"
                    )
                ids.append(label2id[label])
            return torch.tensor(ids, dtype=torch.long)

        def collate(examples: list[dict]) -> dict[str, Any]:
            labels = class_ids(examples)
            images = [data.load_image(example["path"]) for example in examples]
            pixel_values = processor(images, return_tensors="pt")["pixel_values"]  # (batch, 3, height, width)
            return {"pixel_values": pixel_values, "labels": labels, **extra}

        def evaluate(model: nn.Module, examples: list[dict]) -> dict[str, float]:
            return accuracy_of(model, examples, batch_size, collate)

        return Prepared(model, processor, collate, evaluate, saver(processor), class_ids)


# ---------------------------------------------------------------------------- segmentation


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file from its header; an unreadable file is a DataError naming it."""
    try:
        with PIL.Image.open(path) as image:
            return image.size
    except data.IMAGE_ERRORS:
        return data.load_image(path).size  # raises the DataError that names the file


def reduce_labels(class_ids: np.ndarray) -> np.ndarray:
    """The image processor's ``do_reduce_labels``: 0 (background) becomes 255 (ignored), every
    other id moves down by one, 255 stays."""
    return np.where((class_ids == 0) | (class_ids == IGNORE_INDEX), IGNORE_INDEX, class_ids - 1)


class SemanticSegmentationTask(Task):
    """``semantic-segmentation`` with the UperNet head. Masks are resized with the images to
    the model's input size (nearest neighbour, by the image processor, which also applies its
    ``do_reduce_labels``); labels are (batch, height, width) class ids, 255 ignored.

    Classes: the mask values are the class ids, so the model needs ``max id + 1`` classes (at
    least 2). A checkpoint saved with the segmentation head and at least that many classes keeps
    its head and class names; otherwise the head is replaced by one for classes "0".."max id".

    Metric: ``mean_iou`` (chosen by; also ``mean_accuracy`` and ``overall_accuracy``) of the
    logits upsampled bilinearly to the label maps (the processed masks), pixel counts summed
    over all images; a class absent from both the predictions and the labels is left out."""

    def read(self, path: str | Path, options: dict[str, Any]) -> list[dict]:
        return data.read_segmentation_folder(path)

    def prepare(self, model_source: str | Path, train_examples: list[dict], options: dict[str, Any]) -> Prepared:
        from ..auto import AutoConfig, AutoModel

        checkpoint = AutoConfig.from_pretrained(model_source)
        processor = load_image_processor(model_source, checkpoint, options)

        def mask(example: dict) -> np.ndarray:
            class_ids = data.load_mask(example["mask"], _image_size(example["image"]))
            return reduce_labels(class_ids) if processor.do_reduce_labels else class_ids

        found = set()
        for example in train_examples:
            found.update(np.unique(mask(example)).tolist())
        found.discard(IGNORE_INDEX)
        if not found:
            raise DataError(
                f"{train_examples[0]['mask'] if train_examples else 'the training data'}: the training masks hold no "
                f"class ids other than {IGNORE_INDEX} (ignored); label some pixels"
            )
        if min(found) < 0:
            raise DataError(f"the training masks hold the negative class id {min(found)}; use ids from 0")
        needed = max(2, max(found) + 1)
        saved_class = AutoModel.saved_class(checkpoint).__name__
        keep_head = saved_class == SEGMENTATION_CLASS and len(checkpoint.id2label) >= needed
        model = load_model(self, model_source, None if keep_head else [str(index) for index in range(needed)])
        num_labels = len(model.config.id2label)
        extra = _model_inputs(processor, model.config)
        batch_size = eval_batch_size(options, DEFAULT_EVAL_BATCH_SIZE)

        def encoded(examples: list[dict]) -> dict[str, Any]:
            images = [data.load_image(example["image"]) for example in examples]
            masks = [data.load_mask(example["mask"], image.size) for example, image in zip(examples, images)]
            batch = processor(images, segmentation_maps=masks, return_tensors="pt")
            labels = batch["labels"]  # (batch, height, width)
            for example, label_map in zip(examples, labels):
                invalid = label_map[(label_map != IGNORE_INDEX) & ((label_map < 0) | (label_map >= num_labels))]
                if invalid.numel():
                    raise DataError(
                        f"{example['mask']}: class id {int(invalid[0])} is outside the model's {num_labels} classes "
                        f"(0..{num_labels - 1}, {IGNORE_INDEX} = ignored); fix the mask or add the class to the "
                        "training masks"
                    )
            return {"pixel_values": batch["pixel_values"], "labels": labels, **extra}

        def evaluate(model: nn.Module, examples: list[dict]) -> dict[str, float]:
            predictions, labels = [], []
            for _, (_, label_maps), output in batch_outputs(model, examples, batch_size, without_labels(encoded)):
                logits = output.logits.float()  # (batch, classes, h, w)
                logits = F.interpolate(logits, size=label_maps.shape[-2:], mode="bilinear", align_corners=False)
                predictions.extend(logits.argmax(1).cpu().numpy())
                labels.extend(label_maps.numpy())
            scores = metrics.mean_iou(predictions, labels, num_labels, ignore_index=IGNORE_INDEX)
            return {key: scores[key] for key in ("mean_iou", "mean_accuracy", "overall_accuracy")}

        def check(examples: list[dict]) -> None:
            for example in examples:
                ids = np.unique(mask(example))
                invalid = ids[(ids != IGNORE_INDEX) & ((ids < 0) | (ids >= num_labels))]
                if invalid.size:
                    raise DataError(
                        f"{example['mask']}: class id {int(invalid[0])} is outside the model's {num_labels} classes "
                        f"(0..{num_labels - 1}, {IGNORE_INDEX} = ignored); fix the mask or add the class to the "
                        "training masks"
                    )

        return Prepared(model, processor, encoded, evaluate, saver(processor), check)


register(ImageClassificationTask("image-classification", VISION, "AutoModelForImageClassification", "accuracy", True))
register(
    SemanticSegmentationTask("semantic-segmentation", VISION, "AutoModelForSemanticSegmentation", "mean_iou", True)
)

__all__ = ["ImageClassificationTask", "SemanticSegmentationTask", "load_image_processor", "reduce_labels"]

"""Image pipelines: the top labels of an image, and a class for every pixel.

Both take an image file's path, a PIL image or a (height, width, 3) uint8 numpy array. Files
and PIL images are turned upright by their EXIF orientation and made RGB (alpha dropped), as
the reference library reads them; the checkpoint's image processor
(``preprocessor_config.json``) then resizes every image to the model's size, so a batch
needs no padding.

``semantic-segmentation`` returns what the reference's ``image-segmentation`` pipeline returns
for a semantic-segmentation model: one ``{"score": None, "label", "mask"}`` per class present,
in class-id order, the mask an ``"L"`` image of the input's size (255 where that class wins).
``return_label_map=True`` gives ``{"segments": <that list>, "label_map": (height, width)
int64 class ids}`` instead. The command writes each input's label map as a palette PNG (pixel
value = class id) and the input blended with the class colours (``SemanticSegmentationPipeline.export``).
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch

from .base import (
    FUNCTION_TO_APPLY,
    Option,
    PathLike,
    Pipeline,
    check_score_function,
    check_top_k,
    class_scores,
    default_score_function,
)

# class colours: golden-ratio steps around the hue circle, so neighbouring ids differ
GOLDEN_RATIO = (5**0.5 - 1) / 2
OVERLAY_ALPHA = 0.5  # the overlay's share of the class colours (the input's is 1 - alpha)


# ---------------------------------------------------------------------- images


def rgb_image(item: Any) -> PIL.Image.Image:
    """A pipeline input as an upright RGB PIL image: a file path (an unreadable file is one
    ``DataError`` line naming it), a PIL image, or a (height, width[, 1|3|4]) uint8 array."""
    from ..training.data import load_image

    if isinstance(item, (str, os.PathLike)):
        return load_image(item)
    if isinstance(item, PIL.Image.Image):
        return PIL.ImageOps.exif_transpose(item).convert("RGB")
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8:
            raise TypeError(
                f"an image array must be uint8 (0..255), got {item.dtype}; convert it with .astype(np.uint8)"
            )
        if item.ndim == 3 and item.shape[-1] == 1:
            item = item[..., 0]
        if not (item.ndim == 2 or (item.ndim == 3 and item.shape[-1] in (3, 4))) or 0 in item.shape:
            raise ValueError(
                f"an image array must be (height, width, 3) RGB (or 2-D grayscale, or RGBA), got shape {item.shape}"
            )
        return PIL.Image.fromarray(item).convert("RGB")
    raise TypeError(f"an image input is a file path, a PIL image or a uint8 numpy array, not {type(item).__name__}")


def class_colours(count: int) -> np.ndarray:
    """(count, 3) uint8 RGB colours, a distinct bright one per class id."""
    hues = (np.arange(count) * GOLDEN_RATIO) % 1.0
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.75, 0.95)] for hue in hues], dtype=np.uint8)


# ---------------------------------------------------------------------- shared by both tasks


class ImagePipeline(Pipeline):
    """One input is one piece: its processed ``pixel_values`` and its original size."""

    modality = "image"
    unit = "image"

    @classmethod
    def load_processor(cls, model: PathLike, **hub: Any) -> Any:
        try:
            return super().load_processor(model, **hub)
        except FileNotFoundError as error:
            if "preprocessor_config.json" not in str(error):
                raise
            raise FileNotFoundError(
                f"{error}: an image pipeline needs the checkpoint's image processor settings; save them there "
                "with Data2VecVisionImageProcessor(...).save_pretrained(folder)"
            ) from None

    def preprocess(self, item: Any, **options: Any) -> list[dict[str, Any]]:
        image = rgb_image(item)
        pixel_values = self.processor(image, return_tensors="pt")["pixel_values"][0]  # (3, height, width)
        return [{"pixel_values": pixel_values, "size": (image.height, image.width)}]

    def length(self, piece: dict[str, Any]) -> int:
        return piece["pixel_values"].shape[-2] * piece["pixel_values"].shape[-1]

    def collate(self, pieces: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        shapes = {tuple(piece["pixel_values"].shape) for piece in pieces}
        if len(shapes) > 1:
            raise ValueError(
                "the image processor gives images of different sizes (it neither resizes nor crops to one size), "
                "so they cannot share a batch: use batch_size=1 (--batch-size 1)"
            )
        return {"pixel_values": torch.stack([piece["pixel_values"] for piece in pieces])}

    def unbatch(self, outputs: Any, pieces: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        return list(outputs.logits.float().cpu())

    def label_of(self, class_id: int) -> str:
        return self.model.config.id2label.get(class_id, f"LABEL_{class_id}")


# ---------------------------------------------------------------------- image classification


class ImageClassificationPipeline(ImagePipeline):
    """``pipe(image)`` -> ``[{"label", "score"}, ...]``, best first (``top_k`` of them, at most
    one per label). Scores: softmax over the labels; sigmoid per label for a multi-label model
    (``problem_type`` ``multi_label_classification``) or a single-label one; the raw logits for a
    regression model; ``function_to_apply`` chooses."""

    task = "image-classification"
    auto_class = "AutoModelForImageClassification"
    options = (
        Option("top_k", 5, "how many labels to return, best first (at most the model's labels)", type=int),
        FUNCTION_TO_APPLY,
    )  # fmt: skip

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().check_options(options)
        check_top_k(options["top_k"])
        function = check_score_function(options["function_to_apply"])
        options["function_to_apply"] = function or default_score_function(self.model.config)
        return options

    def postprocess(
        self, item: Any, pieces: list[dict[str, Any]], outputs: list[torch.Tensor], *, top_k: int | None,
        function_to_apply: str,
    ) -> list[dict[str, Any]]:  # fmt: skip
        logits = outputs[0]  # (labels,)
        scores = class_scores(logits, function_to_apply)
        scores = scores.tolist()
        # best first; equal scores keep the label order
        ranked = sorted(range(len(scores)), key=lambda class_id: -scores[class_id])
        return [{"label": self.label_of(class_id), "score": scores[class_id]} for class_id in ranked[:top_k]]

    def describe(self, name: str, result: Any) -> str:
        return f"{name}: " + ", ".join(f"{entry['label']} {entry['score']:.2f}" for entry in result)


# ---------------------------------------------------------------------- semantic segmentation


class SemanticSegmentationPipeline(ImagePipeline):
    """``pipe(image)`` -> ``[{"score": None, "label", "mask"}, ...]``: one entry per class that wins
    some pixel, in class-id order; ``mask`` is an ``"L"`` PIL image of the input's size, 255 on the
    pixels of that class and 0 elsewhere. The class of a pixel is the argmax of the logits resized
    bilinearly to the input's size. ``return_label_map=True``: ``{"segments": <that list>,
    "label_map": (height, width) int64 numpy array of class ids}``.

    The command writes files (``export``): ``<stem>.png`` and ``<stem>-overlay.png`` in
    ``--output-dir`` (default ``segmentation`` in the current folder)."""

    task = "semantic-segmentation"
    auto_class = "AutoModelForSemanticSegmentation"
    command_call_options: ClassVar[dict[str, Any]] = {"return_label_map": True}  # export() writes the map
    options = (
        Option(
            "return_label_map", False,
            "return {'segments': [...], 'label_map': (height, width) class ids} instead of the segments alone",
            command=False,
        ),
        Option(
            "output_dir", "segmentation",
            "folder for each image's label map (<stem>.png, pixel value = class id) and overlay "
            "(<stem>-overlay.png); default: ./segmentation",
            cli_only=True,
        ),
    )  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stems: dict[str, str] = {}  # input name -> stem of its files (written by export)

    def postprocess(
        self, item: Any, pieces: list[dict[str, Any]], outputs: list[torch.Tensor], *, return_label_map: bool
    ) -> Any:
        size = pieces[0]["size"]  # (height, width) of the input
        label_map = self.processor.post_process_semantic_segmentation(outputs[0][None], target_sizes=[size])[0]
        label_map = label_map.numpy()
        segments = [
            {"score": None, "label": self.label_of(int(class_id)), "mask": mask_image(label_map == class_id)}
            for class_id in np.unique(label_map)
        ]
        return {"segments": segments, "label_map": label_map} if return_label_map else segments

    # ------------------------------------------------------------------ the command's files

    def export(self, name: str, result: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Writes ``<stem>.png`` (the label map: a palette PNG whose pixel values are the class ids,
        or a 16-bit grayscale PNG for more than 256 classes) and ``<stem>-overlay.png`` (the image
        ``name`` blended half and half with the class colours) into ``options["output_dir"]``;
        returns ``{"label_map": path, "overlay": path, "labels": [{"id", "label", "fraction"}]}``,
        the labels by their share of the pixels, largest first.

        ``<stem>`` is the input file's name without its suffix; an input whose files would take
        a name already written in this run (``a/cat.png`` after ``b/cat.png``, or ``cat-overlay.png``
        after ``cat.png``), or the input itself, gets ``<stem>-2``, ``<stem>-3``, ... instead."""
        label_map = result["label_map"]  # the command calls with return_label_map=True
        folder = Path(options.get("output_dir") or "segmentation")
        folder.mkdir(parents=True, exist_ok=True)
        stem = self._stem_for(name, folder)
        map_path, overlay_path = folder / f"{stem}.png", folder / f"{stem}-overlay.png"

        num_labels = self.model.config.num_labels
        colours = class_colours(max(num_labels, int(label_map.max()) + 1))
        if len(colours) <= 256:
            saved = PIL.Image.fromarray(label_map.astype(np.uint8))
            saved.putpalette(colours.tobytes())  # mode "P": each pixel an index into the colours
        else:
            saved = PIL.Image.fromarray(label_map.astype(np.uint16))
        saved.save(map_path)
        image = rgb_image(name)
        if (image.height, image.width) != label_map.shape:
            raise ValueError(f"{name}: the image is not the size of its label map; it changed while running")
        PIL.Image.blend(image, PIL.Image.fromarray(colours[label_map]), OVERLAY_ALPHA).save(overlay_path)

        class_ids, counts = np.unique(label_map, return_counts=True)
        shares = sorted(zip(class_ids.tolist(), (counts / label_map.size).tolist()), key=lambda pair: -pair[1])
        return {
            "label_map": str(map_path),
            "overlay": str(overlay_path),
            "labels": [
                {"id": class_id, "label": self.label_of(class_id), "fraction": share} for class_id, share in shares
            ],
        }

    def _stem_for(self, name: str, folder: Path) -> str:
        """The stem of the files of input ``name``: the same for the same name, a new one (numbered
        from 2) where ``<stem>.png`` or ``<stem>-overlay.png`` is taken by another input or is the input."""
        if name in self._stems:
            return self._stems[name]
        base = Path(name).stem or "image"
        taken = {file for stem in self._stems.values() for file in (f"{stem}.png", f"{stem}-overlay.png")}
        source = Path(name).resolve()
        number = 1
        while True:
            stem = base if number == 1 else f"{base}-{number}"
            files = (f"{stem}.png", f"{stem}-overlay.png")
            if not taken.intersection(files) and all((folder / file).resolve() != source for file in files):
                break
            number += 1
        self._stems[name] = stem
        return stem

    def describe(self, name: str, result: Any) -> str:
        shares = ", ".join(f"{entry['label']} {100 * entry['fraction']:.1f}%" for entry in result["labels"])
        return f"{name}: {shares}\n  label map {result['label_map']}, overlay {result['overlay']}"


def mask_image(selected: np.ndarray) -> PIL.Image.Image:
    """A boolean (height, width) array as an ``"L"`` image: 255 where true, 0 elsewhere."""
    return PIL.Image.fromarray(selected.astype(np.uint8) * 255)


PIPELINES = {cls.task: cls for cls in (ImageClassificationPipeline, SemanticSegmentationPipeline)}

"""Images (and segmentation maps) to model inputs for the data2vec vision models.

The steps and their settings are those of the ``preprocessor_config.json`` files of the
official checkpoints (the BEiT image processor's format): resize, center crop, rescale,
normalise. Numbers match the reference library's PIL-based processor bit for bit:

- every image is made 3-channel RGB first (grayscale repeated, alpha composited onto white);
- resizing is done by Pillow on 8-bit RGB with the configured filter (``resample``: the PIL
  filter number, 3 = bicubic). Float images in [0, 1] are quantised to 8 bits for the resize
  (``value * 255`` truncated) and scaled back by 1/255 afterwards, as the reference does;
  float images holding whole numbers in [0, 255] are resized as 8-bit values and stay in [0, 255];
- center cropping pads with zeros where the crop is larger than the image;
- rescale is ``value * rescale_factor`` computed in float64 then stored as float32;
  normalise is ``(value - mean) / std`` per channel in float32.

Image files are opened with Pillow, turned upright by their EXIF orientation and read as RGB
(alpha dropped), as the reference reads them.

Segmentation maps follow the same resize/crop geometry but with nearest-neighbour resizing,
so that class ids are never blended (the reference library resizes them with the image filter).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Union

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
import torch.nn.functional as F

from data2vec.core.preprocessing import Batch, Preprocessor, PretrainedFiles, write_json

PREPROCESSOR_CONFIG_FILE = "preprocessor_config.json"
REFERENCE_PROCESSOR_TYPE = "BeitImageProcessor"

ImageLike = Union[PIL.Image.Image, np.ndarray, torch.Tensor, str, os.PathLike]

# Keys of preprocessor_config.json that only name the class that wrote it.
_CLASS_NAME_KEYS = ("image_processor_type", "feature_extractor_type", "processor_class")
_RESAMPLE_NAMES = {int(member): member.name.lower() for member in PIL.Image.Resampling}


# The batch type of every preprocessor; the name stays for code that imports it from here.
ImageBatch = Batch


# ---------------------------------------------------------------------------------------------
# Settings


def _height_width(value: Any, name: str) -> dict[str, int]:
    """``224``, ``(224, 224)`` or ``{"height": 224, "width": 224}`` -> ``{"height", "width"}``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, a (height, width) pair or a dict; got {value!r}")
    if isinstance(value, int):
        height = width = value
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        height, width = value
    elif isinstance(value, dict):
        if set(value) != {"height", "width"}:
            raise ValueError(
                f"{name} must have exactly the keys 'height' and 'width'; got {sorted(value)}. "
                "Other resize modes (e.g. 'shortest_edge') are not used by data2vec vision checkpoints."
            )
        height, width = value["height"], value["width"]
    else:
        raise TypeError(f"{name} must be an int, a (height, width) pair or a dict; got {value!r}")
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (height, width)):
        raise ValueError(f"{name} height and width must be positive integers; got {value!r}")
    return {"height": int(height), "width": int(width)}


def _resample_filter(value: Any) -> int:
    try:
        return int(PIL.Image.Resampling(int(value)))
    except (TypeError, ValueError):
        choices = ", ".join(f"{number} ({name})" for number, name in _RESAMPLE_NAMES.items())
        raise ValueError(f"resample must be a PIL filter number, one of {choices}; got {value!r}") from None


def _per_channel(value: Any, name: str) -> tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (float(value),) * 3
    values = tuple(float(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"{name} must have one value per RGB channel (3); got {len(values)}: {value!r}")
    return values  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Reading inputs


def _open_image_file(path: str | os.PathLike, *, as_rgb: bool) -> PIL.Image.Image:
    if not Path(path).is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    try:
        image = PIL.Image.open(path)
        image.load()
    except (PIL.UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{str(path)!r} is not an image file that Pillow can read ({error})") from None
    image = PIL.ImageOps.exif_transpose(image)
    # A file is read as RGB (alpha dropped), as the reference library reads image files.
    return image.convert("RGB") if as_rgb else image


def _as_numpy(value: Any, what: str) -> np.ndarray:
    """A numpy array or torch tensor -> numpy array; anything else is a TypeError naming ``what``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"{what} is a {type(value).__name__}; expected a PIL image, a numpy array, "
            "a torch tensor or the path of an image file"
        )
    return value


def _pil_to_rgb(image: PIL.Image.Image) -> np.ndarray:
    """PIL image of any mode -> (3, H, W) uint8; transparency is composited onto white."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = PIL.Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("RGB")).transpose(2, 0, 1)


def _channel_first(array: np.ndarray) -> np.ndarray:
    """(H, W), (C, H, W) or (H, W, C) with C in {1, 3, 4} -> (C, H, W); C first wins a tie."""
    if array.ndim == 2:
        return array[None]
    if array.ndim != 3:
        raise ValueError(
            f"an image must be 2-D (H, W) or 3-D (C, H, W) / (H, W, C); got an array of shape {array.shape}"
        )
    if array.shape[0] in (1, 3, 4):
        return array
    if array.shape[-1] in (1, 3, 4):
        return array.transpose(2, 0, 1)
    raise ValueError(
        f"cannot find the channels of an image of shape {tuple(array.shape)}: expected 1 (grayscale), "
        "3 (RGB) or 4 (RGBA) channels as the first axis (C, H, W) or the last axis (H, W, C), "
        f"got {array.shape[0]} first and {array.shape[-1]} last"
    )


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """(C, H, W) with C in {1, 3, 4} -> (3, H, W), same dtype."""
    channels = array.shape[0]
    if channels == 1:
        return np.repeat(array, 3, axis=0)
    if channels == 3:
        return array
    # RGBA onto a white background; white is 255 for integer images and 1.0 for float ones.
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise ValueError(
                f"a float RGBA image must hold values in [0, 1]; got [{array.min()}, {array.max()}]"
            )
        white = 1.0
    else:
        white = 255
    alpha = array[3:4] / white
    composite = alpha * array[:3] + (1 - alpha) * white
    if white == 255:
        composite = np.round(composite)
    return composite.astype(array.dtype)


def _image_to_rgb_array(image: Any, index: int) -> np.ndarray:
    """One image in any accepted form -> (3, H, W) numpy array (uint8 or the input's dtype)."""
    if isinstance(image, (str, os.PathLike)):
        image = _open_image_file(image, as_rgb=True)
    if isinstance(image, PIL.Image.Image):
        return _pil_to_rgb(image)
    image = _as_numpy(image, f"image {index}")
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise TypeError(f"image {index} has dtype {image.dtype}; expected integer (0..255) or float values")
    image = _channel_first(image)
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise ValueError(f"image {index} is empty: shape {image.shape} (channels, height, width)")
    return _array_to_rgb(image)


def _label_map_to_array(label_map: Any, index: int) -> np.ndarray:
    """One segmentation map -> (H, W) int64 class ids."""
    if isinstance(label_map, (str, os.PathLike)):
        label_map = _open_image_file(label_map, as_rgb=False)
    if isinstance(label_map, PIL.Image.Image):
        mode = label_map.mode
        label_map = np.asarray(label_map)
        if label_map.ndim != 2:
            raise ValueError(
                f"segmentation map {index} is a {mode} image; it must have a single channel of class ids "
                "(PIL mode L, P or I, or a 2-D array)"
            )
    label_map = _as_numpy(label_map, f"segmentation map {index}")
    if label_map.ndim != 2:
        raise ValueError(
            f"segmentation map {index} must be 2-D (H, W) class ids; got shape {tuple(label_map.shape)}"
        )
    if np.issubdtype(label_map.dtype, np.floating):
        if not np.array_equal(label_map, np.round(label_map)):
            raise ValueError(f"segmentation map {index} must hold whole-number class ids; got fractional values")
    elif not (np.issubdtype(label_map.dtype, np.integer) or label_map.dtype == np.bool_):
        raise TypeError(f"segmentation map {index} has dtype {label_map.dtype}; expected integer class ids")
    return label_map.astype(np.int64)


def _is_batch_array(value: Any, single_ndim: int) -> bool:
    return isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == single_ndim + 1


def _as_list(inputs: Any, single_ndim: int, what: str) -> list[Any]:
    """A single input, a batched array (one more axis than a single one) or a list -> a flat list."""
    if isinstance(inputs, (list, tuple)):
        items: list[Any] = []
        for item in inputs:
            items.extend(list(item) if _is_batch_array(item, single_ndim) else [item])
    elif _is_batch_array(inputs, single_ndim):
        items = list(inputs)
    else:
        items = [inputs]
    if not items:
        raise ValueError(f"no {what} given: pass one or a list of them")
    return items


# ---------------------------------------------------------------------------------------------
# Pixel operations, all on channel-first arrays


def _resize_image(image: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    """(3, H, W) -> (3, height, width), resized by Pillow as 8-bit RGB."""
    scaled_from_unit_range = False
    if image.dtype != np.uint8:
        if np.allclose(image, image.astype(int)):
            if image.min() < 0 or image.max() > 255:
                raise ValueError(
                    f"cannot resize an image with values in [{image.min()}, {image.max()}]: whole-number "
                    "images must lie in [0, 255]"
                )
        elif image.min() >= 0 and image.max() <= 1:
            scaled_from_unit_range = True
            image = (image.astype(np.float64) * 255).astype(np.float32)
        else:
            raise ValueError(
                f"cannot resize a float image with values in [{image.min()}, {image.max()}]: expected "
                "[0, 1] or whole numbers in [0, 255]"
            )
        image = image.astype(np.uint8)
    pil_image = PIL.Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)))
    resized = np.asarray(pil_image.resize((width, height), resample=PIL.Image.Resampling(resample)))
    resized = resized.transpose(2, 0, 1)  # (3, height, width) uint8
    if scaled_from_unit_range:
        resized = (resized.astype(np.float64) * (1 / 255)).astype(np.float32)
    return resized


def _resize_label_map(label_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) int64 -> (height, width) int64, nearest neighbour (Pillow, 32-bit integer image)."""
    info = np.iinfo(np.int32)
    if label_map.size and (label_map.min() < info.min or label_map.max() > info.max):
        raise ValueError("segmentation map class ids must fit in 32-bit integers to be resized")
    pil_map = PIL.Image.fromarray(np.ascontiguousarray(label_map, dtype=np.int32))
    resized = pil_map.resize((width, height), resample=PIL.Image.Resampling.NEAREST)
    return np.asarray(resized).astype(np.int64)


def _center_crop(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """(..., H, W) -> (..., height, width): the central window; axes shorter than the window
    are zero-padded (the extra pixel of an odd padding goes after)."""
    padding = [(0, 0)] * (array.ndim - 2)
    starts = []
    for size, target in ((array.shape[-2], height), (array.shape[-1], width)):
        if size < target:
            before = math.ceil((target - size) / 2)
            padding.append((before, target - size - before))
            starts.append(0)
        else:
            padding.append((0, 0))
            starts.append((size - target) // 2)
    if any(pad != (0, 0) for pad in padding):
        array = np.pad(array, padding)
    top, left = starts
    return array[..., top : top + height, left : left + width]


def _rescale(image: np.ndarray, factor: float) -> np.ndarray:
    return (image.astype(np.float64) * factor).astype(np.float32)


def _normalize(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    mean_array = np.asarray(mean, dtype=image.dtype)[:, None, None]  # (3, 1, 1)
    std_array = np.asarray(std, dtype=image.dtype)[:, None, None]
    return (image - mean_array) / std_array


def _reduce_labels(label_map: np.ndarray) -> np.ndarray:
    """Background 0 becomes the ignore id 255, every other class id moves down by one
    (255 stays 255)."""
    shifted = np.where(label_map == 0, 255, label_map) - 1
    return np.where(shifted == 254, 255, shifted)


# ---------------------------------------------------------------------------------------------


class Data2VecVisionImageProcessor(Preprocessor):
    """Turns images into ``pixel_values`` (batch, 3, height, width) float32 and segmentation
    maps into ``labels`` (batch, height, width) int64. Defaults are those of the reference
    library's BEiT image processor; ``from_pretrained`` reads a checkpoint's settings from
    ``preprocessor_config.json`` (keyword arguments override single settings: ``size=384``)
    and ``save_pretrained`` writes that file."""

    config_file: ClassVar[str] = PREPROCESSOR_CONFIG_FILE

    def __init__(
        self,
        *,
        do_resize: bool = True,
        size: int | Sequence[int] | dict[str, int] | None = None,
        resample: int = int(PIL.Image.Resampling.BICUBIC),
        do_center_crop: bool = False,
        crop_size: int | Sequence[int] | dict[str, int] | None = None,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: float | Sequence[float] = (0.5, 0.5, 0.5),
        image_std: float | Sequence[float] = (0.5, 0.5, 0.5),
        do_reduce_labels: bool = False,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self.do_resize = bool(do_resize)
        self.size = _height_width(224 if size is None else size, "size")
        self.resample = _resample_filter(resample)
        self.do_center_crop = bool(do_center_crop)
        self.crop_size = _height_width(224 if crop_size is None else crop_size, "crop_size")
        self.do_rescale = bool(do_rescale)
        self.rescale_factor = float(rescale_factor)
        self.do_normalize = bool(do_normalize)
        self.image_mean = _per_channel(image_mean, "image_mean")
        self.image_std = _per_channel(image_std, "image_std")
        self.do_reduce_labels = bool(do_reduce_labels)
        # Keys of a loaded preprocessor_config.json that this class does not use; written back on save.
        self.extra_config = dict(extra_config or {})

    # -- configuration files -------------------------------------------------------------------

    _SETTING_NAMES = (
        "do_resize",
        "size",
        "resample",
        "do_center_crop",
        "crop_size",
        "do_rescale",
        "rescale_factor",
        "do_normalize",
        "image_mean",
        "image_std",
        "do_reduce_labels",
    )

    def to_dict(self) -> dict[str, Any]:
        settings = {
            "do_resize": self.do_resize,
            "size": dict(self.size),
            "resample": self.resample,
            "do_center_crop": self.do_center_crop,
            "crop_size": dict(self.crop_size),
            "do_rescale": self.do_rescale,
            "rescale_factor": self.rescale_factor,
            "do_normalize": self.do_normalize,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "do_reduce_labels": self.do_reduce_labels,
            "image_processor_type": REFERENCE_PROCESSOR_TYPE,
        }
        return {**self.extra_config, **settings}

    @classmethod
    def from_dict(cls, config: dict[str, Any], **overrides: Any) -> "Data2VecVisionImageProcessor":
        """Settings from a ``preprocessor_config.json`` dict. Older files spell the label setting
        ``reduce_labels`` and give ``size``/``crop_size`` as one int; both are understood."""
        unknown = set(overrides) - set(cls._SETTING_NAMES)
        if unknown:
            raise TypeError(f"unknown image processor setting(s) {sorted(unknown)}; known: {list(cls._SETTING_NAMES)}")
        config = {key: value for key, value in config.items() if key not in _CLASS_NAME_KEYS}
        legacy_reduce_labels = config.pop("reduce_labels", None)
        if legacy_reduce_labels is not None and "do_reduce_labels" not in config:
            config["do_reduce_labels"] = legacy_reduce_labels
        config.update(overrides)
        settings = {key: config.pop(key) for key in cls._SETTING_NAMES if config.get(key) is not None}
        for key in cls._SETTING_NAMES:
            config.pop(key, None)  # explicit nulls mean "default"
        return cls(**settings, extra_config=config)

    @classmethod
    def _from_files(cls, files: PretrainedFiles, overrides: dict[str, Any]) -> "Data2VecVisionImageProcessor":
        return cls.from_dict(files.read_json(cls.config_file), **overrides)

    def _save_files(self, directory: Path) -> Path:
        return write_json(directory / self.config_file, self.to_dict(), sort_keys=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.to_dict(), sort_keys=True)})"

    # -- preprocessing -------------------------------------------------------------------------

    def preprocess(
        self,
        images: ImageLike | Sequence[ImageLike],
        segmentation_maps: ImageLike | Sequence[ImageLike] | None = None,
        *,
        do_resize: bool | None = None,
        size: int | Sequence[int] | dict[str, int] | None = None,
        resample: int | None = None,
        do_center_crop: bool | None = None,
        crop_size: int | Sequence[int] | dict[str, int] | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: float | Sequence[float] | None = None,
        image_std: float | Sequence[float] | None = None,
        do_reduce_labels: bool | None = None,
        return_tensors: str | None = "pt",
    ) -> Batch:
        """Images: PIL images (any mode), numpy arrays / torch tensors (H, W), (C, H, W) or
        (H, W, C) with 1, 3 or 4 channels, uint8 in [0, 255] or float (in [0, 1] when
        resizing), image file paths; one, a list, or a 4-D batch. Segmentation maps: 2-D class
        ids, one per image and of the same size. Settings given here override the stored ones
        for this call. ``return_tensors``: "pt" (torch), "np" (numpy) or None (lists of arrays)."""
        if return_tensors not in ("pt", "np", None):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None; got {return_tensors!r}")
        settings = Data2VecVisionImageProcessor(
            do_resize=self.do_resize if do_resize is None else do_resize,
            size=self.size if size is None else size,
            resample=self.resample if resample is None else resample,
            do_center_crop=self.do_center_crop if do_center_crop is None else do_center_crop,
            crop_size=self.crop_size if crop_size is None else crop_size,
            do_rescale=self.do_rescale if do_rescale is None else do_rescale,
            rescale_factor=self.rescale_factor if rescale_factor is None else rescale_factor,
            do_normalize=self.do_normalize if do_normalize is None else do_normalize,
            image_mean=self.image_mean if image_mean is None else image_mean,
            image_std=self.image_std if image_std is None else image_std,
            do_reduce_labels=self.do_reduce_labels if do_reduce_labels is None else do_reduce_labels,
        )

        rgb_images = [_image_to_rgb_array(image, i) for i, image in enumerate(_as_list(images, 3, "images"))]
        batch = Batch({"pixel_values": [settings._process_image(image) for image in rgb_images]})

        if segmentation_maps is not None:
            maps = _as_list(segmentation_maps, 2, "segmentation maps")
            if len(maps) != len(rgb_images):
                raise ValueError(
                    f"got {len(rgb_images)} image(s) but {len(maps)} segmentation map(s); pass one map per image"
                )
            label_maps = [_label_map_to_array(label_map, i) for i, label_map in enumerate(maps)]
            for i, (image, label_map) in enumerate(zip(rgb_images, label_maps)):
                if image.shape[1:] != label_map.shape:
                    raise ValueError(
                        f"segmentation map {i} is {label_map.shape[0]}x{label_map.shape[1]} (height x width) "
                        f"but its image is {image.shape[1]}x{image.shape[2]}; they must be the same size"
                    )
            batch["labels"] = [settings._process_label_map(label_map) for label_map in label_maps]

        if return_tensors is not None:  # (batch, 3, height, width) and (batch, height, width)
            batch.convert_to_tensors(
                return_tensors,
                unit="pixels",
                remedy="resize or center crop to one size, or pass return_tensors=None to get a list",
            )
        return batch

    __call__ = preprocess

    def _process_image(self, image: np.ndarray) -> np.ndarray:
        """(3, H, W) -> (3, height, width) float32."""
        if self.do_resize:
            image = _resize_image(image, self.size["height"], self.size["width"], self.resample)
        if self.do_center_crop:
            image = _center_crop(image, self.crop_size["height"], self.crop_size["width"])
        if self.do_rescale:
            image = _rescale(image, self.rescale_factor)
        if self.do_normalize:
            image = _normalize(image, self.image_mean, self.image_std)
        return np.ascontiguousarray(image, dtype=np.float32)

    def _process_label_map(self, label_map: np.ndarray) -> np.ndarray:
        """(H, W) int64 -> (height, width) int64."""
        if self.do_reduce_labels:
            label_map = _reduce_labels(label_map)
        if self.do_resize:
            label_map = _resize_label_map(label_map, self.size["height"], self.size["width"])
        if self.do_center_crop:
            label_map = _center_crop(label_map, self.crop_size["height"], self.crop_size["width"])
        return np.ascontiguousarray(label_map, dtype=np.int64)

    # -- outputs -------------------------------------------------------------------------------

    def post_process_semantic_segmentation(
        self,
        outputs: Any,
        target_sizes: Sequence[Sequence[int]] | torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Segmentation logits (batch, classes, h, w), or a model output holding them as
        ``.logits``, -> one (height, width) int64 class map per image. With ``target_sizes``
        (one (height, width) per image) the logits are first resized bilinearly
        (align_corners=False) to that size; without, the maps keep the logits' resolution."""
        logits = outputs if isinstance(outputs, torch.Tensor) else getattr(outputs, "logits", None)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
            raise TypeError(
                "expected segmentation logits of shape (batch, classes, height, width) or a model output "
                f"with such .logits; got {type(outputs).__name__}"
            )
        if target_sizes is None:
            return list(logits.argmax(dim=1))  # each (h, w)
        if len(target_sizes) != len(logits):
            raise ValueError(
                f"got {len(target_sizes)} target size(s) for a batch of {len(logits)}; pass one (height, width) "
                "per image"
            )
        maps = []
        for image_logits, target_size in zip(logits, target_sizes):
            height, width = (int(v) for v in target_size)
            resized = F.interpolate(image_logits[None], size=(height, width), mode="bilinear", align_corners=False)
            maps.append(resized[0].argmax(dim=0))  # (height, width)
        return maps

"""Data2VecVisionImageProcessor against the reference library's BEiT image processor.

In transformers 5.x ``BeitImageProcessor`` is the torchvision-based processor; without
torchvision (as here, and as this library needs) the name falls back to the PIL/numpy
implementation ``BeitImageProcessorPil``, which is the oracle used below. Both sides
resize with Pillow on 8-bit RGB, so the results agree to float32 rounding.

The reference needs ``do_convert_rgb=True`` to accept grayscale or RGBA input (it raises
otherwise); this library always converts to RGB, so the reference is called with it.

The one intended difference: the reference resizes segmentation maps with the *image*
filter (bicubic by default), which blends class ids at region borders; this library resizes
them with nearest neighbour. Label parity is therefore checked against the reference run
with ``resample=NEAREST``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch

from data2vec.vision.image_processor import Data2VecVisionImageProcessor

transformers = pytest.importorskip("transformers")
from transformers import BeitImageProcessorPil  # noqa: E402

ATOL = 1e-4
NEAREST, BILINEAR, BICUBIC = 0, 2, 3


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _pixels(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """(H, W, C) uint8: a smooth gradient plus noise, so resizing filters matter."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), (x + y) % 256], -1)
    base = np.concatenate([base] * 2, -1)[..., :channels]
    noise = _rng(seed).integers(-40, 40, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _reference_pixels(images, **settings) -> np.ndarray:
    return BeitImageProcessorPil()(images, do_convert_rgb=True, return_tensors="np", **settings)["pixel_values"]


def _ours(images, **settings):
    return Data2VecVisionImageProcessor()(images, **settings)


# --- inputs of every kind -------------------------------------------------------------------

_A = _pixels(37, 53, 4, seed=1)  # (H=37, W=53)
_B = _pixels(17, 300, 4, seed=2)  # (H=17, W=300)

IMAGE_CASES = {
    # name: (our input, the reference's input)
    "pil_rgb_37x53": (PIL.Image.fromarray(_A[..., :3]), PIL.Image.fromarray(_A[..., :3])),
    "pil_gray_300x17": (PIL.Image.fromarray(_B[..., 0]), PIL.Image.fromarray(_B[..., 0])),
    "pil_rgba": (PIL.Image.fromarray(_A), PIL.Image.fromarray(_A)),
    "pil_la": (PIL.Image.fromarray(_A[..., :2], "LA"), PIL.Image.fromarray(_A[..., :2], "LA")),
    "numpy_hwc_uint8": (_B[..., :3], _B[..., :3]),
    # the reference takes no bare (H, W) array; (H, W, 1) is the same grayscale image to it
    "numpy_hw_uint8": (_A[..., 1], _A[..., 1:2]),
    "numpy_hwc_rgba_uint8": (_B, _B),
    "numpy_chw_int64": (_A[..., :3].transpose(2, 0, 1).astype(np.int64),) * 2,
    "torch_chw_uint8": (torch.from_numpy(_A[..., :3].transpose(2, 0, 1).copy()),) * 2,
    "torch_hwc_1ch_uint8": (torch.from_numpy(_B[..., :1].copy()), torch.from_numpy(_B[..., :1].copy())),
}

FLOAT_CASES = {
    # float images in [0, 1]: the caller turns rescaling off, as the reference documents.
    "numpy_chw_float_unit": (_A[..., :3].transpose(2, 0, 1) / 255.0).astype(np.float32),
    "numpy_hwc_float64_unit": _B[..., :3] / 255.0,
    "numpy_chw_rgba_float_unit": (_A.transpose(2, 0, 1) / 255.0).astype(np.float32),
    "torch_chw_float_unit": torch.from_numpy((_B[..., :3].transpose(2, 0, 1) / 255.0).astype(np.float32)),
}

SETTINGS = {
    "defaults": {},
    "no_center_crop_other_size": {"do_center_crop": False, "size": {"height": 40, "width": 24}},
    "center_crop_smaller": {"do_center_crop": True, "size": 48, "crop_size": {"height": 31, "width": 20}},
    "center_crop_larger_pads": {
        "do_center_crop": True,
        "size": {"height": 15, "width": 22},
        "crop_size": {"height": 24, "width": 27},
    },
    "no_rescale": {"do_rescale": False, "size": 30},
    "no_normalize_bilinear": {"do_normalize": False, "resample": BILINEAR, "size": 30},
    "nearest_custom_stats": {
        "resample": NEAREST,
        "size": {"height": 33, "width": 19},
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
    },
    "lanczos_box_factor": {"resample": 1, "size": 26, "rescale_factor": 1 / 127.5},
    "no_resize_crop": {"do_resize": False, "do_center_crop": True, "crop_size": 12},
}


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_pixel_values_match_reference(case: str, setting: str) -> None:
    ours_input, reference_input = IMAGE_CASES[case]
    settings = SETTINGS[setting]
    ours = _ours(ours_input, **settings)["pixel_values"]
    expected = _reference_pixels(reference_input, **settings)
    assert ours.dtype == torch.float32 and ours.shape[:2] == (1, 3)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours.numpy(), expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", sorted(FLOAT_CASES))
@pytest.mark.parametrize("setting", ["defaults", "center_crop_larger_pads", "nearest_custom_stats", "no_resize_crop"])
def test_float_images_in_unit_range_match_reference(case: str, setting: str) -> None:
    image = FLOAT_CASES[case]
    settings = {**SETTINGS[setting], "do_rescale": False}
    ours = _ours(image, **settings)["pixel_values"]
    expected = _reference_pixels(image, **settings)
    np.testing.assert_allclose(ours.numpy(), expected, atol=ATOL, rtol=0)


def test_default_settings_are_the_reference_defaults() -> None:
    reference = BeitImageProcessorPil().to_dict()
    ours = Data2VecVisionImageProcessor().to_dict()
    for key in ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
                "do_normalize", "image_mean", "image_std", "do_reduce_labels", "image_processor_type"):
        assert ours[key] == (list(reference[key]) if isinstance(reference[key], tuple) else reference[key]), key
    assert ours["size"] == {"height": 224, "width": 224} and ours["resample"] == BICUBIC


def test_batches_lists_and_return_types() -> None:
    images = [PIL.Image.fromarray(_A[..., :3]), _B[..., :3], torch.from_numpy(_A[..., :3].copy())]
    ours = _ours(images, size=20)
    expected = BeitImageProcessorPil()(images, size=20, return_tensors="np")["pixel_values"]
    assert ours["pixel_values"].shape == (3, 3, 20, 20)
    np.testing.assert_allclose(ours.pixel_values.numpy(), expected, atol=ATOL, rtol=0)

    stacked = np.stack([_A[..., :3], _A[::-1, ::-1, :3]])  # (2, H, W, 3): a 4-D batch
    as_numpy = _ours(stacked, size=20, return_tensors="np")["pixel_values"]
    assert isinstance(as_numpy, np.ndarray) and as_numpy.dtype == np.float32 and as_numpy.shape == (2, 3, 20, 20)
    np.testing.assert_allclose(as_numpy, _reference_pixels(stacked, size=20), atol=ATOL, rtol=0)

    unstacked = _ours([_A[..., :3], _B[..., :3]], do_resize=False, return_tensors=None)["pixel_values"]
    assert [a.shape for a in unstacked] == [(3, 37, 53), (3, 17, 300)]


def test_image_files_by_path(tmp_path: Path) -> None:
    rgba_file = tmp_path / "rgba.png"
    PIL.Image.fromarray(_A).save(rgba_file)
    gray_file = tmp_path / "gray.png"
    PIL.Image.fromarray(_B[..., 0]).save(gray_file)
    for path in (rgba_file, gray_file):
        expected = BeitImageProcessorPil()(str(path), size=32, return_tensors="np")["pixel_values"]
        for given in (path, str(path)):
            np.testing.assert_allclose(_ours(given, size=32)["pixel_values"].numpy(), expected, atol=ATOL, rtol=0)


# --- segmentation maps ----------------------------------------------------------------------

_MAP_A = _rng(3).integers(0, 6, (37, 53)).astype(np.uint8)
_MAP_B = _rng(4).integers(0, 150, (17, 300)).astype(np.uint8)
_MAP_B[0, :5] = 255  # an "ignore" pixel stays 255 under label reduction


@pytest.mark.parametrize("do_reduce_labels", [False, True])
@pytest.mark.parametrize("setting", ["defaults", "center_crop_larger_pads", "no_resize_crop", "nearest_custom_stats"])
def test_labels_match_reference_with_nearest_resizing(do_reduce_labels: bool, setting: str) -> None:
    images = [PIL.Image.fromarray(_A[..., :3]), _B[..., :3]]
    maps = [PIL.Image.fromarray(_MAP_A), _MAP_B.astype(np.int64)]
    settings = {**SETTINGS[setting], "do_reduce_labels": do_reduce_labels}
    ours = _ours(images, segmentation_maps=maps, **settings)

    reference = BeitImageProcessorPil()
    nearest = {**settings, "resample": NEAREST}
    expected_labels = reference(images, segmentation_maps=maps, return_tensors="np", **nearest)["labels"]
    expected_pixels = reference(images, return_tensors="np", **settings)["pixel_values"]
    assert ours["labels"].dtype == torch.int64
    np.testing.assert_array_equal(ours["labels"].numpy(), expected_labels)
    np.testing.assert_allclose(ours["pixel_values"].numpy(), expected_pixels, atol=ATOL, rtol=0)


def test_labels_keep_only_input_class_ids() -> None:
    # Nearest resizing never invents a class id between two neighbouring ones.
    label_map = np.zeros((37, 53), np.int64)
    label_map[:, 20:] = 7
    label_map[25:, :] = 40
    labels = _ours(_A[..., :3], segmentation_maps=label_map)["labels"]
    assert labels.shape == (1, 224, 224)
    assert set(labels.unique().tolist()) == {0, 7, 40}


def test_label_reduction_facts() -> None:
    label_map = np.array([[0, 1, 2], [150, 255, 0]], np.uint8)
    image = np.zeros((2, 3, 3), np.uint8)
    reduced = _ours(image, segmentation_maps=label_map, do_resize=False, do_reduce_labels=True)["labels"]
    assert reduced.tolist() == [[[255, 0, 1], [149, 255, 255]]]
    kept = _ours(image, segmentation_maps=torch.from_numpy(label_map), do_resize=False)["labels"]
    assert kept.tolist() == [label_map.tolist()]


def test_label_map_forms() -> None:
    palette_map = PIL.Image.fromarray(_MAP_A, "P")
    forms = [palette_map, _MAP_A, torch.from_numpy(_MAP_A.astype(np.int32)), _MAP_A[None].astype(np.float32)]
    results = [_ours(_A[..., :3], segmentation_maps=[form], size=24)["labels"] for form in forms]
    for result in results[1:]:
        assert torch.equal(result, results[0])
    batch = _ours(np.stack([_A[..., :3]] * 2), segmentation_maps=np.stack([_MAP_A] * 2), size=24)["labels"]
    assert batch.shape == (2, 24, 24) and torch.equal(batch[1], results[0][0])


# --- post-processing ------------------------------------------------------------------------


def test_post_process_semantic_segmentation_matches_reference() -> None:
    torch.manual_seed(0)
    outputs = SimpleNamespace(logits=torch.randn(2, 5, 7, 9))
    ours_processor = Data2VecVisionImageProcessor()
    reference = BeitImageProcessorPil()

    # Ours also takes the sizes as a (batch, 2) tensor (the reference fails on one with this torch).
    for sizes in ([(37, 53), (17, 300)], [(20, 11), (7, 9)]):
        ours = ours_processor.post_process_semantic_segmentation(outputs, target_sizes=torch.tensor(sizes))
        expected = reference.post_process_semantic_segmentation(outputs, target_sizes=sizes)
        assert ours_processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)[0].equal(ours[0])
        assert [m.shape for m in ours] == [m.shape for m in expected]
        for mine, theirs in zip(ours, expected):
            assert mine.dtype == torch.int64 and torch.equal(mine, theirs)

    ours = ours_processor.post_process_semantic_segmentation(outputs)
    expected = reference.post_process_semantic_segmentation(outputs)
    assert all(m.shape == (7, 9) for m in ours)
    assert all(torch.equal(a, b) for a, b in zip(ours, expected))
    # A bare logits tensor is accepted too.
    assert torch.equal(ours_processor.post_process_semantic_segmentation(outputs.logits)[1], expected[1])


# --- configuration files --------------------------------------------------------------------

_CUSTOM = {
    "size": {"height": 40, "width": 28},
    "resample": BILINEAR,
    "do_center_crop": True,
    "crop_size": {"height": 32, "width": 20},
    "rescale_factor": 1 / 127.5,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "do_reduce_labels": True,
}


def _compare_outputs(ours: Data2VecVisionImageProcessor, reference: BeitImageProcessorPil, reduce: bool) -> None:
    images = [PIL.Image.fromarray(_A[..., :3]), _B[..., :3]]
    maps = [_MAP_A, _MAP_B]
    mine = ours(images, segmentation_maps=maps)
    theirs = reference(images, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(mine["pixel_values"].numpy(), theirs, atol=ATOL, rtol=0)
    labels = reference(
        images, segmentation_maps=maps, resample=NEAREST, do_reduce_labels=reduce, return_tensors="np"
    )["labels"]
    np.testing.assert_array_equal(mine["labels"].numpy(), labels)


def test_saved_config_loads_in_reference(tmp_path: Path) -> None:
    ours = Data2VecVisionImageProcessor(**_CUSTOM)
    ours.save_pretrained(tmp_path)
    reference = BeitImageProcessorPil.from_pretrained(tmp_path)
    loaded = reference.to_dict()
    for key, value in _CUSTOM.items():
        assert (list(loaded[key]) if isinstance(loaded[key], tuple) else loaded[key]) == value, key
    assert reference.do_reduce_labels is True
    _compare_outputs(ours, reference, reduce=True)
    assert Data2VecVisionImageProcessor.from_pretrained(tmp_path).to_dict() == ours.to_dict()


def test_reference_config_loads_here(tmp_path: Path) -> None:
    reference = BeitImageProcessorPil(**_CUSTOM)
    reference.save_pretrained(tmp_path)
    ours = Data2VecVisionImageProcessor.from_pretrained(tmp_path)
    for key, value in _CUSTOM.items():
        assert ours.to_dict()[key] == value, key
    _compare_outputs(ours, reference, reduce=True)


def test_legacy_config_file(tmp_path: Path) -> None:
    # The layout of the official data2vec-vision / BEiT files: ints for sizes, the old
    # `reduce_labels` key and the feature-extractor class name.
    legacy = {
        "crop_size": 24,
        "do_center_crop": False,
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "BeitFeatureExtractor",
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "reduce_labels": True,
        "resample": BILINEAR,
        "size": 30,
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(legacy))
    ours = Data2VecVisionImageProcessor.from_pretrained(tmp_path)
    assert ours.size == {"height": 30, "width": 30} and ours.crop_size == {"height": 24, "width": 24}
    assert ours.do_reduce_labels is True and ours.resample == BILINEAR
    # transformers 5 no longer maps `reduce_labels` (it keeps it as an unused attribute); this
    # library honours it, so the labels are compared with the reference told explicitly.
    reference = BeitImageProcessorPil.from_pretrained(tmp_path)
    _compare_outputs(ours, reference, reduce=True)
    saved = json.loads(ours.save_pretrained(tmp_path / "again").read_text())
    assert "reduce_labels" not in saved and "feature_extractor_type" not in saved and saved["do_reduce_labels"] is True


def test_overrides_and_unknown_keys(tmp_path: Path) -> None:
    Data2VecVisionImageProcessor().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    config["do_convert_rgb"] = True  # a key this class does not use survives a round trip
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    loaded = Data2VecVisionImageProcessor.from_pretrained(tmp_path, size=64, do_center_crop=True)
    assert loaded.size == {"height": 64, "width": 64} and loaded.do_center_crop is True
    assert loaded.to_dict()["do_convert_rgb"] is True
    with pytest.raises(TypeError, match="unknown image processor setting.*'sise'"):
        Data2VecVisionImageProcessor.from_pretrained(tmp_path, sise=64)
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json not found"):
        Data2VecVisionImageProcessor.from_pretrained(empty_folder)


# --- errors ---------------------------------------------------------------------------------


def test_wrong_channel_counts_are_reported() -> None:
    with pytest.raises(ValueError, match=r"shape \(37, 53, 2\).*1 \(grayscale\), 3 \(RGB\) or 4 \(RGBA\)"):
        _ours(np.zeros((37, 53, 2), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(5, 37, 53\).*got 5 first and 53 last"):
        _ours(torch.zeros(5, 37, 53))
    with pytest.raises(ValueError, match=r"2-D \(H, W\) or 3-D"):
        _ours([np.zeros((1, 1, 3, 8, 8), np.uint8)])


def test_bad_image_objects_and_files(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="image 1 is a dict; expected a PIL image"):
        _ours([_A[..., :3], {"pixels": 1}])
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt.*is not an image file"):
        _ours(not_an_image)
    with pytest.raises(FileNotFoundError, match=r"missing\.png.*does not exist"):
        _ours(str(tmp_path / "missing.png"))
    with pytest.raises(ValueError, match=r"float image with values in \[-1\.0, 2\.0\]"):
        _ours(np.linspace(-1, 2, 3 * 8 * 8).reshape(3, 8, 8))
    with pytest.raises(ValueError, match="no images given"):
        _ours([])


def test_bad_segmentation_maps() -> None:
    image = _A[..., :3]
    with pytest.raises(ValueError, match=r"segmentation map 0 is 36x53 .* but its image is 37x53"):
        _ours(image, segmentation_maps=_MAP_A[:36])
    with pytest.raises(ValueError, match=r"got 2 image\(s\) but 1 segmentation map\(s\)"):
        _ours([image, image], segmentation_maps=[_MAP_A])
    with pytest.raises(ValueError, match="segmentation map 0 is a RGB image; it must have a single channel"):
        _ours(image, segmentation_maps=[PIL.Image.fromarray(image)])
    with pytest.raises(ValueError, match="whole-number class ids"):
        _ours(image, segmentation_maps=_MAP_A + 0.5)


def test_bad_settings_and_outputs() -> None:
    with pytest.raises(ValueError, match="return_tensors must be 'pt', 'np' or None"):
        _ours(_A[..., :3], return_tensors="tf")
    with pytest.raises(ValueError, match="cannot stack pixel_values of different sizes"):
        _ours([_A[..., :3], _B[..., :3]], do_resize=False)
    with pytest.raises(ValueError, match="size must have exactly the keys 'height' and 'width'"):
        Data2VecVisionImageProcessor(size={"shortest_edge": 224})
    with pytest.raises(ValueError, match="resample must be a PIL filter number"):
        Data2VecVisionImageProcessor(resample=9)
    with pytest.raises(ValueError, match="image_mean must have one value per RGB channel"):
        _ours(_A[..., :3], image_mean=[0.5, 0.5])
    with pytest.raises(TypeError, match="unexpected keyword argument 'do_resise'"):
        _ours(_A[..., :3], do_resise=False)
    processor = Data2VecVisionImageProcessor()
    with pytest.raises(ValueError, match="got 1 target size\\(s\\) for a batch of 2"):
        processor.post_process_semantic_segmentation(SimpleNamespace(logits=torch.zeros(2, 3, 4, 4)), [(8, 8)])
    with pytest.raises(TypeError, match="segmentation logits of shape"):
        processor.post_process_semantic_segmentation(SimpleNamespace(logits=None))

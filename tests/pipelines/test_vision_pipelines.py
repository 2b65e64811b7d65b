"""The image-classification and semantic-segmentation pipelines on tiny noisy checkpoints and
PNGs that the tests write: results equal the model called directly and transformers' pipelines
on the same folder, batching keeps input order and results, the command's JSON lines and files
(label-map PNG, overlay) hold the same numbers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from PIL import Image

import data2vec
from data2vec.training.data import DataError
from tests.training.test_tasks_vision import SEGMENTATION, write_checkpoint, write_image

CLASSES = {0: "tabby", 1: "tiger", 2: "lynx", 3: "ant", 4: "dog", 5: "emu"}
REGIONS = {0: "road", 1: "sky", 2: "car", 3: "tree"}
ATOL = 1e-4


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Checkpoints (6-class classifier, 1-label classifier, 4-class segmenter) and images of
    different sizes and colours: a.png 40x36, b.png 30x50, c.png 64x48, d.png 24x24."""
    root = tmp_path_factory.mktemp("vision")
    images = [
        write_image(root / f"{name}.png", colour, size=size, seed=seed)
        for seed, (name, colour, size) in enumerate(
            [("a", (220, 40, 30), (40, 36)), ("b", (30, 60, 220), (30, 50)), ("c", (40, 200, 60), (64, 48)),
             ("d", (128, 128, 128), (24, 24))]
        )
    ]  # fmt: skip
    classifier = data2vec.Data2VecVisionForImageClassification
    segmenter = data2vec.Data2VecVisionForSemanticSegmentation
    return {
        "classifier": write_checkpoint(root / "classifier", classifier, id2label=CLASSES),
        "one_label": write_checkpoint(root / "one_label", classifier, id2label={0: "cat"}),
        "segmenter": write_checkpoint(root / "segmenter", segmenter, id2label=REGIONS, **SEGMENTATION),
        "images": [str(path) for path in images],
        "root": root,
    }


def reference_pipeline(task, folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.pipeline(task, model=str(folder), device="cpu")


def direct_logits(folder, model_class, image):
    """The logits of our model called on the image processor's output for one image."""
    model = getattr(data2vec, model_class).from_pretrained(folder).eval()
    processor = data2vec.AutoProcessor.from_pretrained(folder)
    with torch.no_grad():
        return model(**processor(image, return_tensors="pt")).logits[0]


def assert_same_labels_and_scores(ours, reference):
    assert [entry["label"] for entry in ours] == [entry["label"] for entry in reference]
    assert list(ours[0]) == ["label", "score"]
    np.testing.assert_allclose([e["score"] for e in ours], [e["score"] for e in reference], atol=ATOL, rtol=0)


def exif_rotated(path, destination):
    """The image saved with EXIF orientation 6 (shown rotated 90 degrees)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(path).save(destination, exif=exif.tobytes())
    return str(destination)


# ---------------------------------------------------------------------- image classification


def test_image_classification_equals_the_model_and_transformers(folders):
    pipe = data2vec.pipeline("image-classification", model=folders["classifier"])
    reference = reference_pipeline("image-classification", folders["classifier"])
    path, other = folders["images"][:2]
    inputs = [path, Image.open(other).convert("P"), np.asarray(Image.open(folders["images"][2]))]

    # the model called directly: softmax over the 6 labels, best 5 first
    for image, result in zip(inputs, pipe(inputs)):
        probabilities = direct_logits(folders["classifier"], "Data2VecVisionForImageClassification", image).softmax(-1)
        best = probabilities.argsort(descending=True)[:5].tolist()
        assert [entry["label"] for entry in result] == [CLASSES[i] for i in best]
        np.testing.assert_allclose([e["score"] for e in result], probabilities[best].numpy(), atol=1e-6)

    # transformers' pipeline on the same folder, default and chosen options
    for image in inputs:
        assert_same_labels_and_scores(pipe(image), reference(image))
    for options in ({"top_k": 10}, {"top_k": 2, "function_to_apply": "sigmoid"}, {"function_to_apply": "none"}):
        ours, expected = pipe(path, **options), reference(path, **options)
        assert len(ours) == min(options.get("top_k", 5), 6)
        assert_same_labels_and_scores(ours, expected)

    # a one-label model gets the sigmoid by default, as in transformers
    one_label = data2vec.pipeline("image-classification", model=folders["one_label"])
    ours = one_label(path)
    assert_same_labels_and_scores(ours, reference_pipeline("image-classification", folders["one_label"])(path))
    logit = direct_logits(folders["one_label"], "Data2VecVisionForImageClassification", path)
    assert ours == [{"label": "cat", "score": pytest.approx(logit.sigmoid().item(), abs=1e-6)}]

    # describe: one line per input
    assert pipe.describe("a.png", pipe(path, top_k=2)) == "a.png: " + ", ".join(
        f"{entry['label']} {entry['score']:.2f}" for entry in reference(path, top_k=2)
    )


def test_image_classification_batches_keep_order_and_results(folders):
    inputs = [*folders["images"], folders["images"][1]]  # sizes 40x36, 30x50, 64x48, 24x24, 30x50
    single = data2vec.pipeline("image-classification", model=folders["classifier"])
    batched = data2vec.pipeline("image-classification", model=folders["classifier"], batch_size=3)
    one_by_one = [single(image) for image in inputs]
    in_threes = batched(inputs, top_k=6)
    assert len(in_threes) == len(inputs)
    for ours, expected in zip(in_threes, one_by_one):
        assert_same_labels_and_scores(ours[:5], expected)
    assert in_threes[1] == in_threes[4]  # the same image twice
    assert in_threes[0] != in_threes[1]


def test_image_classification_in_bfloat16(folders):
    path = folders["images"][0]
    full = data2vec.pipeline("image-classification", model=folders["classifier"])(path, top_k=6)
    half = data2vec.pipeline("image-classification", model=folders["classifier"], dtype="bfloat16")(path, top_k=6)
    scores = {entry["label"]: entry["score"] for entry in full}
    assert {entry["label"] for entry in half} == set(CLASSES.values())
    for entry in half:
        assert entry["score"] == pytest.approx(scores[entry["label"]], abs=0.02)


def test_image_classification_command_prints_the_pipeline_results(folders, tmp_path):
    (tmp_path / "more").mkdir()
    shutil.copy(folders["images"][1], tmp_path / "more" / "b.png")
    shutil.copy(folders["images"][2], tmp_path / "more" / "c.png")
    argv = [sys.executable, "-m", "data2vec.cli", "image-classification", "--model", str(folders["classifier"])]
    argv += ["--json", "--top-k", "3", "--batch-size", "2", folders["images"][0], str(tmp_path / "more")]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    names = [folders["images"][0], str(tmp_path / "more" / "b.png"), str(tmp_path / "more" / "c.png")]
    assert [line["input"] for line in lines] == names
    expected = data2vec.pipeline("image-classification", model=folders["classifier"])(names, top_k=3)
    for line, result in zip(lines, expected):
        assert_same_labels_and_scores(line["result"], result)


# ---------------------------------------------------------------------- semantic segmentation


def argmax_at_size(folder, image_path):
    """The class map that the test computes: our model's logits resized bilinearly to the image's
    size, argmax over the classes."""
    logits = direct_logits(folder, "Data2VecVisionForSemanticSegmentation", image_path)
    width, height = Image.open(image_path).size
    resized = F.interpolate(logits[None], size=(height, width), mode="bilinear", align_corners=False)
    return resized[0].argmax(0).numpy()


def test_semantic_segmentation_equals_the_model_and_transformers(folders, tmp_path):
    pipe = data2vec.pipeline("semantic-segmentation", model=folders["segmenter"])
    reference = reference_pipeline("image-segmentation", folders["segmenter"])
    rotated = exif_rotated(folders["images"][0], tmp_path / "rotated.png")  # 40x36 stored, 36x40 shown
    inputs = [*folders["images"][:3], rotated, Image.open(folders["images"][3])]

    results = pipe(inputs)
    for image, ours in zip(inputs, results):
        expected = reference(image)
        assert [(s["score"], s["label"]) for s in ours] == [(s["score"], s["label"]) for s in expected]
        for segment, reference_segment in zip(ours, expected):
            assert segment["mask"].mode == "L" and segment["mask"].size == reference_segment["mask"].size
            assert np.array_equal(np.asarray(segment["mask"]), np.asarray(reference_segment["mask"]))
    assert results[3][0]["mask"].size == (36, 40)  # turned upright by its EXIF orientation
    assert sum(len(result) for result in results) > len(results)  # some image has several classes

    # the model called directly: a mask of 255 exactly where the resized logits' argmax is that class
    class_map = argmax_at_size(folders["segmenter"], folders["images"][2])
    present = np.unique(class_map)
    assert [segment["label"] for segment in results[2]] == [REGIONS[i] for i in present]
    for class_id, segment in zip(present, results[2]):
        assert np.array_equal(np.asarray(segment["mask"]), np.where(class_map == class_id, 255, 0))

    # return_label_map: the same segments and the class map itself
    with_map = pipe(folders["images"][2], return_label_map=True)
    assert set(with_map) == {"segments", "label_map"}
    assert with_map["label_map"].dtype == np.int64 and np.array_equal(with_map["label_map"], class_map)
    assert [s["label"] for s in with_map["segments"]] == [s["label"] for s in results[2]]


def test_semantic_segmentation_batches_keep_order_and_results(folders):
    inputs = [*folders["images"], folders["images"][0]]
    single = data2vec.pipeline("semantic-segmentation", model=folders["segmenter"])
    batched = data2vec.pipeline("semantic-segmentation", model=folders["segmenter"], batch_size=3)
    in_threes = batched(inputs, return_label_map=True)
    for image, ours in zip(inputs, in_threes):
        expected = single(image, return_label_map=True)["label_map"]
        assert ours["label_map"].shape == Image.open(image).size[::-1]
        assert np.array_equal(ours["label_map"], expected)


def test_semantic_segmentation_command_writes_label_maps_and_overlays(folders, tmp_path):
    # two inputs named cat.png in different folders, and one named cat-overlay.png
    for folder, source in (("x", 0), ("y", 2)):
        (tmp_path / folder).mkdir()
        shutil.copy(folders["images"][source], tmp_path / folder / "cat.png")
    shutil.copy(folders["images"][1], tmp_path / "x" / "cat-overlay.png")
    names = ["x/cat.png", "y/cat.png", "x/cat-overlay.png"]
    argv = [sys.executable, "-m", "data2vec.cli", "semantic-segmentation", "--model", str(folders["segmenter"])]
    done = subprocess.run(
        [*argv, "--json", *names], check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["input"] for line in lines] == names

    written = [(line["result"]["label_map"], line["result"]["overlay"]) for line in lines]
    # the default folder is ./segmentation; a stem already taken gets a number
    assert written == [
        ("segmentation/cat.png", "segmentation/cat-overlay.png"),
        ("segmentation/cat-2.png", "segmentation/cat-2-overlay.png"),
        ("segmentation/cat-overlay-2.png", "segmentation/cat-overlay-2-overlay.png"),
    ]
    saved_first = Image.open(tmp_path / lines[0]["result"]["label_map"])
    for name, line in zip(names, lines):
        class_map = argmax_at_size(folders["segmenter"], tmp_path / name)
        saved = Image.open(tmp_path / line["result"]["label_map"])
        assert saved.mode == "P" and np.array_equal(np.asarray(saved), class_map)
        # the overlay: the input half and half with the palette colour of each pixel's class
        image = np.asarray(Image.open(tmp_path / name).convert("RGB"), dtype=np.float64)
        colours = np.array(saved.getpalette(), dtype=np.float64).reshape(-1, 3)[class_map]
        overlay = Image.open(tmp_path / line["result"]["overlay"])
        assert overlay.size == Image.open(tmp_path / name).size
        assert np.abs(np.asarray(overlay, dtype=np.float64) - (image + colours) / 2).max() <= 1
        # the labels: each class by its share of the pixels, largest first
        ids, counts = np.unique(class_map, return_counts=True)
        shares = sorted(zip(ids.tolist(), (counts / class_map.size).tolist()), key=lambda pair: -pair[1])
        assert [(e["id"], e["label"]) for e in line["result"]["labels"]] == [(i, REGIONS[i]) for i, _ in shares]
        np.testing.assert_allclose([e["fraction"] for e in line["result"]["labels"]], [s for _, s in shares])

    # the readable form of the same export, made in this process
    pipe = data2vec.pipeline("semantic-segmentation", model=folders["segmenter"])
    name = str(tmp_path / names[0])
    exported = pipe.export(name, pipe(name, return_label_map=True), {"output_dir": str(tmp_path / "again")})
    assert exported["labels"] == lines[0]["result"]["labels"]
    assert pipe.describe(name, exported).splitlines() == [
        f"{name}: " + ", ".join(f"{e['label']} {100 * e['fraction']:.1f}%" for e in exported["labels"]),
        f"  label map {tmp_path / 'again' / 'cat.png'}, overlay {tmp_path / 'again' / 'cat-overlay.png'}",
    ]
    assert np.array_equal(np.asarray(Image.open(exported["label_map"])), np.asarray(saved_first))


# ---------------------------------------------------------------------- mistakes


def test_vision_pipeline_mistakes_are_one_line_errors(folders, tmp_path):
    without = tmp_path / "no_processor"
    shutil.copytree(folders["classifier"], without)
    (without / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"preprocessor_config\.json not found in folder .*no_processor"):
        data2vec.pipeline("image-classification", model=without)

    pipe = data2vec.pipeline("image-classification", model=folders["classifier"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        pipe(str(broken))
    with pytest.raises(DataError, match=r"missing\.png: no such image file"):
        pipe(str(tmp_path / "missing.png"))
    with pytest.raises(TypeError, match=r"must be uint8 .* got float32"):
        pipe(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"must be \(height, width, 3\) RGB .* got shape \(3, 8, 8, 1\)"):
        pipe(np.zeros((3, 8, 8, 1), dtype=np.uint8))
    with pytest.raises(TypeError, match=r"file path, a PIL image or a uint8 numpy array, not int"):
        pipe(3)
    with pytest.raises(ValueError, match=r"top_k must be a positive integer, got 0"):
        pipe(folders["images"][0], top_k=0)
    with pytest.raises(ValueError, match=r"function_to_apply must be one of softmax, sigmoid, none .*, got 'tanh'"):
        pipe(folders["images"][0], function_to_apply="tanh")
    with pytest.raises(TypeError, match=r"unknown option\(s\) return_label_map"):
        pipe(folders["images"][0], return_label_map=True)

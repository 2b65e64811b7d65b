"""The vision fine-tuning tasks on tiny random checkpoints and PNG folders that the tests write:
the loss falls on a fixed batch, each metric equals hand-computed values on a stub model whose
logits the test sets, the saved folder loads here and in transformers with the same logits,
and mistakes in the data are DataErrors naming the file."""

from __future__ import annotations

import warnings
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers
from PIL import Image
from torch import nn

import data2vec
from data2vec.training.data import DataError
from data2vec.training.tasks import TASKS
from tests.helpers import add_noise, assert_close, losses_fall

TINY_VISION = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    image_size=32, patch_size=8, drop_path_rate=0.0,
)  # fmt: skip
# the feature pyramid takes four encoder outputs: three layers and the embeddings
SEGMENTATION = dict(num_hidden_layers=3, out_indices=[1, 2, 3, 4], pool_scales=[1, 2], auxiliary_channels=16)
COLOURS = {"ant": (40, 200, 60), "cat": (220, 40, 30), "dog": (30, 60, 220)}


def write_checkpoint(folder, model_class=data2vec.Data2VecVisionModel, processor=True, **config):
    """A noisy tiny checkpoint (a backbone unless said otherwise) with a 32x32 image processor."""
    torch.manual_seed(0)
    model = add_noise(model_class(data2vec.Data2VecVisionConfig(**{**TINY_VISION, **config})))
    model.save_pretrained(folder)
    if processor is True:
        processor = data2vec.Data2VecVisionImageProcessor(size=32)
    if processor:
        processor.save_pretrained(folder)
    return folder


def write_image(path, colour, size=(40, 36), seed=0):
    """An RGB PNG of one colour plus noise; `size` is (width, height)."""
    noise = np.random.default_rng(seed).integers(-30, 30, (size[1], size[0], 3))
    pixels = np.clip(np.array(colour)[None, None] + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def image_folder(root, classes=("cat", "dog", "ant"), per_class=2):
    for label in classes:
        (root / label).mkdir(parents=True)
        for index in range(per_class):
            write_image(root / label / f"{index}.png", COLOURS.get(label, (128, 128, 128)), seed=index)
    return root


def assert_reloads(prepared, model, folder, class_name, batch):
    """save -> our class and transformers' class of the same name give the trained model's logits."""
    prepared.save(model, folder)
    model.eval()
    inputs = {"pixel_values": batch["pixel_values"]}
    ours = getattr(data2vec, class_name).from_pretrained(folder)
    reference = getattr(transformers, class_name).from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        expected = model(**inputs).logits
        assert_close(ours(**inputs).logits, expected, f"{class_name} (ours)")
        assert_close(reference(**inputs).logits, expected, f"{class_name} (transformers)")
    assert data2vec.AutoProcessor.from_pretrained(folder).to_dict() == prepared.processor.to_dict()


class Stub(nn.Module):
    """A model whose logits the test sets, one tensor per call; it records its inputs."""

    def __init__(self, logits):
        super().__init__()
        self.logits = list(logits)
        self.calls = []

    def forward(self, **inputs):
        self.calls.append(inputs)
        return SimpleNamespace(logits=self.logits.pop(0))


def quiet_prepare(task, checkpoint, examples, options=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return task.prepare(checkpoint, examples, options or {})


def test_the_two_vision_tasks_are_registered():
    classification, segmentation = TASKS["image-classification"], TASKS["semantic-segmentation"]
    assert (classification.family, classification.auto_class, classification.metric) == (
        "data2vec-vision", "AutoModelForImageClassification", "accuracy",
    )  # fmt: skip
    assert (segmentation.family, segmentation.auto_class, segmentation.metric) == (
        "data2vec-vision", "AutoModelForSemanticSegmentation", "mean_iou",
    )  # fmt: skip
    assert classification.greater_is_better and segmentation.greater_is_better


# ---------------------------------------------------------------------------- classification


def test_image_classification_trains_scores_and_saves(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone")
    task = TASKS["image-classification"]
    examples = task.read(image_folder(tmp_path / "train"), {})
    with pytest.warns(UserWarning, match="a new head is trained"):
        prepared = task.prepare(checkpoint, examples, {})
    model = prepared.model
    assert model.config.id2label == {0: "ant", 1: "cat", 2: "dog"}
    batch = prepared.collate(examples)
    assert batch["pixel_values"].shape == (6, 3, 32, 32)  # 40x36 images resized to the model's 32x32
    assert batch["labels"].tolist() == [0, 0, 1, 1, 2, 2]
    assert "interpolate_pos_encoding" not in batch
    losses = losses_fall(model, batch)
    assert losses[-1] < losses[0]
    assert_reloads(prepared, model, tmp_path / "out", "Data2VecVisionForImageClassification", batch)

    # accuracy in batches of 4: predictions ant, cat, cat, cat | dog, ant for ant, ant, cat, cat | dog, dog
    stub = Stub([torch.eye(3)[[0, 1, 1, 1]], torch.eye(3)[[2, 0]]])
    in_fours = quiet_prepare(task, checkpoint, examples, {"eval_batch_size": 4})
    assert in_fours.evaluate(stub, examples) == {"accuracy": pytest.approx(4 / 6)}
    assert [call["pixel_values"].shape[0] for call in stub.calls] == [4, 2]
    assert all("labels" not in call for call in stub.calls)


def test_image_classification_unknown_class_names_the_image(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone")
    task = TASKS["image-classification"]
    prepared = quiet_prepare(task, checkpoint, task.read(image_folder(tmp_path / "train"), {}))
    evaluation = task.read(image_folder(tmp_path / "eval", classes=("cat", "emu"), per_class=1), {})
    for call in (prepared.check, prepared.collate, lambda rows: prepared.evaluate(prepared.model, rows)):
        with pytest.raises(DataError, match=r"eval/emu/0\.png: class 'emu' \(its folder\) is not one of the 3 classes"):
            call(evaluation)


def test_image_classification_unreadable_image_names_the_file(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone")
    task = TASKS["image-classification"]
    root = image_folder(tmp_path / "train", classes=("cat", "dog"))
    (root / "dog" / "broken.png").write_bytes(b"not a png")
    examples = task.read(root, {})
    prepared = quiet_prepare(task, checkpoint, examples)
    with pytest.raises(DataError, match=r"dog/broken\.png: not a readable image"):
        prepared.collate(examples)


def test_image_classification_keeps_the_head_of_a_checkpoint_with_the_same_classes(tmp_path):
    id2label = {0: "ant", 1: "cat", 2: "dog"}
    classifier = data2vec.Data2VecVisionForImageClassification
    checkpoint = write_checkpoint(tmp_path / "classifier", classifier, id2label=id2label)
    saved = data2vec.Data2VecVisionForImageClassification.from_pretrained(checkpoint)
    task = TASKS["image-classification"]
    examples = task.read(image_folder(tmp_path / "train"), {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "new head" warning
        prepared = task.prepare(checkpoint, examples, {})
    assert torch.equal(prepared.model.classifier.weight, saved.classifier.weight)


def test_image_classification_default_processor_and_image_size_option(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone", processor=False)
    task = TASKS["image-classification"]
    examples = task.read(image_folder(tmp_path / "train", classes=("cat", "dog")), {})
    with pytest.warns(UserWarning, match="no preprocessor_config.json"):
        prepared = task.prepare(checkpoint, examples, {})
    assert prepared.processor.size == {"height": 32, "width": 32}
    prepared.save(prepared.model, tmp_path / "out")
    assert (tmp_path / "out" / "preprocessor_config.json").is_file()

    larger = quiet_prepare(task, checkpoint, examples, {"image_size": 48})
    batch = larger.collate(examples)
    assert batch["pixel_values"].shape == (4, 3, 48, 48) and batch["interpolate_pos_encoding"] is True
    assert torch.isfinite(larger.model(**batch).loss)


# ---------------------------------------------------------------------------- segmentation


def write_mask(path, class_ids, mode="L"):
    """A single-channel PNG whose pixel values are `class_ids` (mode "L" or palette "P")."""
    values = class_ids.astype(np.uint8)
    if mode == "L":
        Image.fromarray(values).save(path)
    else:
        mask = Image.frombytes("P", (values.shape[1], values.shape[0]), values.tobytes())
        mask.putpalette([channel for index in range(256) for channel in (index, 255 - index, (7 * index) % 256)])
        mask.save(path)
    return path


def halves(size=40, ignored_rows=5, left=0, right=1):
    """(size, size) class ids: the left half `left`, the right half `right`, the top rows 255."""
    class_ids = np.full((size, size), right)
    class_ids[:, : size // 2] = left
    class_ids[:ignored_rows] = 255
    return class_ids


def segmentation_folder(root, masks, size=40, modes=None):
    """root/images/<i>.png (RGB, size x size) + root/masks/<i>.png for each class-id map."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index, class_ids in enumerate(masks):
        write_image(root / "images" / f"{index}.png", (90, 120, 150), size=(size, size), seed=index)
        write_mask(root / "masks" / f"{index}.png", class_ids, (modes or ["L"] * len(masks))[index])
    return root


def test_semantic_segmentation_trains_and_saves(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone", **SEGMENTATION)
    task = TASKS["semantic-segmentation"]
    root = segmentation_folder(tmp_path / "train", [halves(), halves(left=2, right=1)], modes=["L", "P"])
    examples = task.read(root, {})
    with pytest.warns(UserWarning, match="a new head is trained"):
        prepared = task.prepare(checkpoint, examples, {})
    model = prepared.model
    assert isinstance(model, data2vec.Data2VecVisionForSemanticSegmentation)
    assert model.config.id2label == {0: "0", 1: "1", 2: "2"}  # ids 0..2 in the masks
    batch = prepared.collate(examples)
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    # nearest neighbour from 40 to 32 pixels: output pixel x reads input pixel floor((x + 0.5) * 1.25),
    # so columns 0..15 read the left half, 16..31 the right one, and rows 0..3 the 5 ignored rows
    expected = np.full((2, 32, 32), 1)
    expected[0, :, :16], expected[1, :, :16] = 0, 2
    expected[:, :4] = 255
    assert batch["labels"].dtype == torch.long
    assert np.array_equal(batch["labels"].numpy(), expected)
    losses = losses_fall(model, batch)
    assert losses[-1] < losses[0]
    assert_reloads(prepared, model, tmp_path / "out", "Data2VecVisionForSemanticSegmentation", batch)


def test_semantic_segmentation_mean_iou(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone", **SEGMENTATION)
    task = TASKS["semantic-segmentation"]
    # 32x32 masks (the model's size: no resizing): image 0 is class 0 left, 1 right, top 4 rows
    # ignored; image 1 is all class 2
    masks = [halves(32, 4), np.full((32, 32), 2)]
    examples = task.read(segmentation_folder(tmp_path / "data", masks, size=32), {})
    prepared = quiet_prepare(task, checkpoint, examples)
    # predictions: image 0 class 0 in columns 0..23, 1 in 24..31; image 1 class 1 in columns 0..7, else 2
    predicted = np.zeros((2, 32, 32), dtype=np.int64)
    predicted[0, :, 24:] = 1
    predicted[1] = 2
    predicted[1, :, :8] = 1
    logits = torch.nn.functional.one_hot(torch.from_numpy(predicted), 3).permute(0, 3, 1, 2).float()
    scores = prepared.evaluate(Stub([logits]), examples)
    # scored pixels: image 0 has 28 rows (448 per half), image 1 all 1024
    # class 0: labelled 448, predicted 28 * 24 = 672, both 448 -> IoU 448 / 672
    # class 1: labelled 448, predicted 28 * 8 + 32 * 8 = 480, both 224 -> IoU 224 / (448 + 480 - 224)
    # class 2: labelled 1024, predicted 768, both 768 -> IoU 768 / 1024
    ious = [Fraction(448, 672), Fraction(224, 704), Fraction(768, 1024)]
    accuracies = [Fraction(448, 448), Fraction(224, 448), Fraction(768, 1024)]
    assert scores == pytest.approx(
        {
            "mean_iou": float(sum(ious) / 3),
            "mean_accuracy": float(sum(accuracies) / 3),
            "overall_accuracy": (448 + 224 + 768) / (448 + 448 + 1024),
        }
    )


def test_semantic_segmentation_keeps_a_segmentation_head_with_enough_classes(tmp_path):
    checkpoint = write_checkpoint(
        tmp_path / "segmenter", data2vec.Data2VecVisionForSemanticSegmentation, num_labels=5, **SEGMENTATION
    )
    saved = data2vec.Data2VecVisionForSemanticSegmentation.from_pretrained(checkpoint)
    task = TASKS["semantic-segmentation"]
    examples = task.read(segmentation_folder(tmp_path / "train", [halves()]), {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared = task.prepare(checkpoint, examples, {})
    assert len(prepared.model.config.id2label) == 5
    assert torch.equal(prepared.model.decode_head.classifier.weight, saved.decode_head.classifier.weight)


def test_semantic_segmentation_follows_do_reduce_labels(tmp_path):
    processor = data2vec.Data2VecVisionImageProcessor(size=32, do_reduce_labels=True)
    checkpoint = write_checkpoint(tmp_path / "backbone", processor=processor, **SEGMENTATION)
    task = TASKS["semantic-segmentation"]
    # raw ids 0 (background -> ignored), 1 -> 0 and 2 -> 1
    masks = [halves(32, 4, left=1, right=2), halves(32, 4, left=0, right=2)]
    examples = task.read(segmentation_folder(tmp_path / "train", masks, size=32), {})
    prepared = quiet_prepare(task, checkpoint, examples)
    assert prepared.model.config.id2label == {0: "0", 1: "1"}
    labels = prepared.collate(examples)["labels"]
    assert labels[0, 10].tolist() == [0] * 16 + [1] * 16
    assert labels[1, 10].tolist() == [255] * 16 + [1] * 16


def test_semantic_segmentation_data_errors_name_the_mask(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone", **SEGMENTATION)
    task = TASKS["semantic-segmentation"]
    prepared = quiet_prepare(task, checkpoint, task.read(segmentation_folder(tmp_path / "train", [halves()]), {}))
    assert len(prepared.model.config.id2label) == 2

    unknown = task.read(segmentation_folder(tmp_path / "eval", [halves(right=3)]), {})
    for call in (prepared.check, prepared.collate):
        with pytest.raises(DataError, match=r"eval/masks/0\.png: class id 3 is outside the model's 2 classes"):
            call(unknown)

    wrong_size = segmentation_folder(tmp_path / "small", [halves(40)])
    write_mask(wrong_size / "masks" / "0.png", halves(20))
    examples = task.read(wrong_size, {})
    with pytest.raises(DataError, match=r"small/masks/0\.png: the mask is 20x20 pixels but its image is 40x40"):
        prepared.collate(examples)
    with pytest.raises(DataError, match=r"small/masks/0\.png: the mask is 20x20"):
        quiet_prepare(task, checkpoint, examples)

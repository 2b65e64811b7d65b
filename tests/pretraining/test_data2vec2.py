"""data2vec 2.0 pretraining, the student path and the loss: masked versions (clones) of each sample
with the teacher run once, dropping the masked positions equals masking their keys, the loss at the
masked positions only (written out here), the CLS loss, and what the decoder receives."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from data2vec.core.modeling import Embedded
from data2vec.pretraining.trainer import Pretrainer
from data2vec.vision.embeddings import RelativePositionBias
from tests.pretraining.tiny_setup import make_data, tiny2_recipe

MODALITIES = ("vision", "text", "audio")
INPUT = {"vision": "pixel_values", "text": "input_ids", "audio": "input_values"}
EXTRA = {"vision": 1, "text": 0, "audio": 0}  # tokens before the masked positions: vision's CLS


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data2")
    sources = {}
    for modality in MODALITIES:
        (folder / modality).mkdir()
        sources[modality] = make_data(modality, folder / modality)
    return sources


def trainer(modality, data_folder, out, **sections) -> Pretrainer:
    return Pretrainer(tiny2_recipe(modality, **sections), data_folder[modality], out, progress=False, tensorboard=False)


def positions_of(modality: str, batch: dict, config) -> int:
    """The positions a mask covers, from the input's shape and the model config."""
    if modality == "vision":
        _, _, height, width = batch["pixel_values"].shape
        return (height // config.patch_size) * (width // config.patch_size)
    if modality == "text":
        return batch["input_ids"].shape[1]
    frames = batch["input_values"].shape[1]
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):  # the conv feature encoder
        frames = (frames - kernel) // stride + 1
    return frames


@contextlib.contextmanager
def captured_encoder(backbone):
    """Records what ``backbone.run_encoder`` returns (and the positions it was given) while inside."""
    calls = []
    original = backbone.run_encoder

    def run_encoder(embedded, **options):
        result = original(embedded, **options)
        calls.append((result, options.get("positions")))
        return result

    backbone.run_encoder = run_encoder
    try:
        yield calls
    finally:
        del backbone.run_encoder


@contextlib.contextmanager
def hooked(module, hook, pre=False):
    handle = module.register_forward_pre_hook(hook) if pre else module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


# ---------------------------------------------------------------------------- targets, written out
def normalise(x: torch.Tensor, norm: str) -> torch.Tensor:
    """(B, T, C): "instance" over time per sample and channel (biased variance, eps 1e-5, no affine),
    "layer" over channels per position (eps 1e-5, no affine), "none"."""
    if norm == "instance":
        mean = x.mean(dim=1, keepdim=True)
        variance = x.var(dim=1, unbiased=False, keepdim=True)
        return (x - mean) / torch.sqrt(variance + 1e-5)
    if norm == "layer":
        return F.layer_norm(x, x.shape[-1:], eps=1e-5)
    assert norm == "none"
    return x


def teacher_targets(pretrainer: Pretrainer, batch: dict) -> torch.Tensor:
    """post_norm(mean of the top-K layer outputs, each normalised) of the teacher on the unmasked
    input, at the masked positions' indexing (vision: CLS dropped): (samples, positions, C) float64."""
    modality, settings = pretrainer.recipe.modality, pretrainer.recipe.targets
    with torch.no_grad():
        output = pretrainer.teacher.model.forward_intermediates(
            **{INPUT[modality]: batch[INPUT[modality]]},
            indices=list(range(-settings.top_k, 0)),
            kind=settings.layer_output,
        )
    layers = [layer[:, EXTRA[modality] :].double() for layer in output.intermediates]
    assert len(layers) == settings.top_k
    average = torch.stack([normalise(layer, settings.layer_norm) for layer in layers]).mean(0)
    return normalise(average, settings.post_norm)


def loss_scale(pretrainer: Pretrainer, channels: int) -> float:
    scale = pretrainer.recipe.loss.scale
    return 1.0 / math.sqrt(channels) if scale is None else scale


def masked_total_of(mask: torch.Tensor) -> torch.Tensor:
    return torch.tensor([float(mask.sum())], dtype=torch.float64)


# ---------------------------------------------------------------------------- 1. clone batches
@pytest.mark.parametrize("modality", MODALITIES)
def test_clone_batch_runs_the_teacher_once_per_sample_and_the_student_on_the_visible_positions(
    modality, data_folder, tmp_path
):
    pretrainer = trainer(modality, data_folder, tmp_path / "run", optim={"update_freq": 2})
    clones = pretrainer.recipe.masking.clones
    assert clones == 3
    global_batch = pretrainer.recipe.data.batch_size
    batches = [pretrainer.step_batches()[index] for index in range(2)]  # the two micro-batches of update 1
    config = pretrainer.model_config
    visible_counts = []
    for batch in batches:
        samples = batch[INPUT[modality]].shape[0]
        assert samples == global_batch // 2
        positions = positions_of(modality, batch, config)
        mask = batch["mask"]
        assert mask.dtype == torch.bool and tuple(mask.shape) == (samples, clones, positions)
        for item in mask:  # the masked versions of one sample all differ
            for first, second in itertools.combinations(range(clones), 2):
                assert not torch.equal(item[first], item[second]), (first, second)
        hidden_counts = mask.sum(-1).flatten().tolist()
        assert len(set(hidden_counts)) == 1 and 0 < hidden_counts[0] < positions  # every row hides the same count
        visible_counts.append(positions - hidden_counts[0])
        assert pretrainer._visible_positions(batch) == visible_counts[-1]

    teacher_rows, student_rows = [], []
    teacher_block = pretrainer.teacher.model.encoder.layers[0]
    student_blocks = pretrainer.model.backbone.encoder.layers
    hidden = config.hidden_size
    with (
        hooked(teacher_block, lambda module, args: teacher_rows.append(tuple(args[0].shape)), pre=True),
        hooked(student_blocks[0], lambda module, args: student_rows.append(tuple(args[0].shape)), pre=True),
        hooked(student_blocks[-1], lambda module, args: student_rows.append(tuple(args[0].shape)), pre=True),
    ):
        stats = pretrainer.train_step(batches)
    assert math.isfinite(stats["loss"])
    assert stats["masked"] == sum(int(batch["mask"].sum()) for batch in batches)
    extra = EXTRA[modality]
    assert pretrainer.adapter.extra_tokens == extra
    # the teacher: once per micro-batch, on the B samples with every position
    assert teacher_rows == [
        (batch[INPUT[modality]].shape[0], extra + positions_of(modality, batch, config), hidden) for batch in batches
    ]
    # the student's blocks: B x M rows of the extra tokens and the visible positions only
    expected = []
    for batch, visible in zip(batches, visible_counts):
        expected += [(batch[INPUT[modality]].shape[0] * clones, extra + visible, hidden)] * 2
    assert student_rows == expected


# ---------------------------------------------------------------------------- 2. dropping = masking keys
@pytest.mark.parametrize(
    "modality, model",
    [
        ("vision", {"use_shared_relative_position_bias": True, "use_relative_position_bias": False}),
        ("vision", {"use_shared_relative_position_bias": True, "use_relative_position_bias": True}),
        ("text", {}),
        ("audio", {}),
    ],
    ids=["vision-shared-bias", "vision-per-block-bias", "text", "audio"],
)
def test_dropping_the_masked_positions_equals_masking_their_keys(modality, model, data_folder, tmp_path):
    pretrainer = trainer(modality, data_folder, tmp_path / "run", model=model)
    student = pretrainer.model.double().eval()
    backbone = student.backbone
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # random relative position tables (they start at zero)
        tables = [module.table for module in backbone.modules() if isinstance(module, RelativePositionBias)]
        for table in tables:
            table.copy_(torch.randn(table.shape, generator=generator, dtype=torch.float64))
    if modality == "vision":
        assert len(tables) == 1 + (backbone.config.num_hidden_layers if model["use_relative_position_bias"] else 0)

    batch = pretrainer.step_batches()[0]
    inputs = batch[INPUT[modality]]
    inputs = inputs.double() if inputs.is_floating_point() else inputs
    clones = pretrainer.recipe.masking.clones
    mask = batch["mask"].flatten(0, 1)  # (samples x clones, positions), sample-major
    rows, positions = mask.shape
    visible = positions - int(mask[0].sum())
    extra = EXTRA[modality]

    with torch.no_grad(), captured_encoder(backbone) as calls:
        predictions, cls_state = student({INPUT[modality]: inputs}, mask, visible)
    assert len(calls) == 1
    dropped, kept = calls[0]
    dropped = dropped.last_hidden_state  # (rows, extra + visible, hidden)
    assert tuple(dropped.shape) == (rows, extra + visible, backbone.config.hidden_size)
    assert predictions.shape[0] == int(mask.sum())
    assert (cls_state is None) == (extra == 0)

    # the backbone on every position of every masked version, the masked keys removed by -inf
    with torch.no_grad():
        if modality == "audio":  # as the 1.0 student sees it: the mask embedding at the masked frames
            embedded = backbone.embed(inputs.repeat_interleave(clones, 0), mask_time_indices=mask)
        else:
            embedded = backbone.embed(**{INPUT[modality]: inputs})
            embedded = dataclasses.replace(embedded, hidden_states=embedded.hidden_states.repeat_interleave(clones, 0))
        masked_keys = torch.cat([torch.zeros(rows, extra, dtype=torch.bool), mask], dim=1)  # (rows, extra + positions)
        key_bias = torch.zeros(masked_keys.shape, dtype=torch.float64).masked_fill(masked_keys, float("-inf"))
        key_bias = key_bias[:, None, None, :]  # (rows, 1, 1, keys)
        position_bias = embedded.attention_bias
        if modality == "vision":
            assert position_bias is not None  # the relative position bias is in the check
        if position_bias is None:
            bias = key_bias
        elif callable(position_bias):
            bias = lambda index: position_bias(index) + key_bias
        else:
            bias = position_bias + key_bias
        full = backbone.run_encoder(Embedded(embedded.hidden_states, bias, embedded.extras)).last_hidden_state
        unmasked_keys = backbone.run_encoder(Embedded(embedded.hidden_states, position_bias, embedded.extras))

    at_visible = full[:, extra:][~mask].view(rows, visible, -1)  # the visible positions in order
    torch.testing.assert_close(dropped[:, extra:], at_visible, rtol=0, atol=1e-5)
    torch.testing.assert_close(dropped[:, :extra], full[:, :extra], rtol=0, atol=1e-5)
    if kept is not None:  # the positions given to the encoder: the extra tokens, then the visible positions in order
        expected_kept = torch.arange(positions).expand(rows, -1)[~mask].view(rows, visible) + extra
        assert torch.equal(kept[:, extra:], expected_kept)
    # the check has teeth: with the masked keys left in, the visible states differ
    leaked = unmasked_keys.last_hidden_state[:, extra:][~mask].view(rows, visible, -1)
    assert (leaked - dropped[:, extra:]).abs().max() > 1e-3


# ---------------------------------------------------------------------------- 3. the loss, by formula
@pytest.mark.parametrize("modality", MODALITIES)
def test_the_loss_is_the_scaled_squared_error_at_the_masked_positions(modality, data_folder, tmp_path):
    pretrainer = trainer(modality, data_folder, tmp_path / "run", loss={"cls_weight": 0.0})
    recipe = pretrainer.recipe
    # the published 2.0 targets: instance-normalised FFN outputs (images: layer norm after the average)
    assert (recipe.targets.layer_output, recipe.targets.layer_norm) == ("feed_forward", "instance")
    assert recipe.targets.post_norm == ("layer" if modality == "vision" else "none")
    assert (recipe.loss.beta, recipe.loss.reduction) == (0, "sum")
    batch = pretrainer.step_batches()[0]
    clones = recipe.masking.clones
    mask = batch["mask"].flatten(0, 1)  # (rows, positions)
    visible = pretrainer._visible_positions(batch)
    masked_total = masked_total_of(mask)

    outputs = []

    def keep_output(module, args, output):
        outputs.append(output.detach().double())

    def run(change=None):
        """The micro-batch loss with ``change`` (rows, positions, C) added to the decoder's output."""

        def hook(module, args, output):
            return output if change is None else output + change.to(output.dtype)

        torch.manual_seed(1)  # the same noise and dropout in every run
        with hooked(pretrainer.model.head, hook), hooked(pretrainer.model.head, keep_output):
            loss_sum, prediction, target, _ = pretrainer._micro_batch_loss(batch, visible, masked_total)
        return loss_sum, prediction, target

    loss_sum, prediction, target = run()
    decoded = outputs[-1]  # (rows, positions, C)
    rows, positions, channels = decoded.shape
    assert (rows, positions) == tuple(mask.shape) and channels == pretrainer.model_config.hidden_size
    targets = teacher_targets(pretrainer, batch).repeat_interleave(clones, 0)  # each sample's targets for its clones
    assert targets.shape == decoded.shape
    scale = loss_scale(pretrainer, channels)
    expected = (((decoded - targets) ** 2).sum(-1) * scale)[mask].sum()
    torch.testing.assert_close(loss_sum.double(), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(target.double(), targets[mask], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(prediction.double(), decoded[mask], rtol=0, atol=0)

    # anything at the unmasked positions leaves the loss as it is; at one masked position it changes it
    unmasked = (~mask)[..., None].to(decoded.dtype) * 100.0
    same, _, _ = run(unmasked.expand(-1, -1, channels))
    assert torch.equal(same, loss_sum)
    row, position = (int(index) for index in mask.nonzero()[0])
    one_masked = torch.zeros_like(decoded)
    one_masked[row, position] = 1.0
    changed, _, _ = run(one_masked)
    # (out + 1 - t)^2 - (out - t)^2 summed over channels = 2 sum(out - t) + C
    difference = (2 * (decoded[row, position] - targets[row, position]).sum() + channels) * scale
    torch.testing.assert_close(changed.double() - loss_sum.double(), difference, rtol=1e-3, atol=1e-3)
    assert abs(float(difference)) > 0.1


# ---------------------------------------------------------------------------- 4. the CLS loss
def test_the_cls_loss_regresses_the_mean_target_of_its_sample(data_folder, tmp_path):
    cls_weight = 0.5
    pretrainer = trainer("vision", data_folder, tmp_path / "run", loss={"cls_weight": cls_weight})
    batch = pretrainer.step_batches()[0]
    clones = pretrainer.recipe.masking.clones
    mask = batch["mask"].flatten(0, 1)
    visible = pretrainer._visible_positions(batch)
    masked_total = masked_total_of(mask)
    outputs = []
    with (
        captured_encoder(pretrainer.model.backbone) as calls,
        hooked(pretrainer.model.head, lambda module, args, output: outputs.append(output.detach().double())),
    ):
        loss_sum, *_ = pretrainer._micro_batch_loss(batch, visible, masked_total)
    decoded = outputs[0]
    channels = decoded.shape[-1]
    targets = teacher_targets(pretrainer, batch)  # (samples, patches, C)
    scale = loss_scale(pretrainer, channels)
    assert scale == pytest.approx(1 / math.sqrt(channels))
    regression = (((decoded - targets.repeat_interleave(clones, 0)) ** 2).sum(-1) * scale)[mask].sum()
    cls_state = calls[0][0].last_hidden_state[:, 0].detach().double()  # the encoder's CLS output (after its final norm)
    cls_target = targets.mean(dim=1).repeat_interleave(clones, 0)  # (rows, C)
    cls_part = ((cls_state - cls_target) ** 2).sum(-1).sum() * scale
    expected = regression + cls_weight * float(mask.sum()) * cls_part
    torch.testing.assert_close(loss_sum.double(), expected, rtol=1e-4, atol=1e-6)
    assert float(cls_weight * float(mask.sum()) * cls_part) > 1e-3 * float(regression)  # the CLS part counts


# ---------------------------------------------------------------------------- 5. the decoder's input
@pytest.mark.parametrize("modality", MODALITIES)
def test_the_decoder_gets_the_encoded_visible_positions_and_noise_at_the_masked_ones(modality, data_folder, tmp_path):
    noise_std = 0.3
    pretrainer = trainer(
        modality, data_folder, tmp_path / "run",
        masking={"clones": 8}, decoder={"input_dropout": 0.0, "mask_noise_std": noise_std},
    )  # fmt: skip
    student = pretrainer.model.train()
    batch = pretrainer.step_batches()[0]
    mask = batch["mask"].flatten(0, 1)
    rows, positions = mask.shape
    visible = pretrainer._visible_positions(batch)
    extra = EXTRA[modality]
    received = []
    with (
        torch.no_grad(),
        captured_encoder(student.backbone) as calls,
        hooked(student.head, lambda module, args: received.append(args[0]), pre=True),
    ):
        student({INPUT[modality]: batch[INPUT[modality]]}, mask, visible)
    decoder_input = received[0]  # (rows, positions, hidden)
    hidden = pretrainer.model_config.hidden_size
    assert tuple(decoder_input.shape) == (rows, positions, hidden)
    encoded = calls[0][0].last_hidden_state[:, extra:]  # (rows, visible, hidden)
    assert torch.equal(decoder_input[~mask].view(rows, visible, hidden), encoded)
    noise = decoder_input[mask].double()  # (masked, hidden)
    count = noise.numel()
    assert count > 5000
    assert abs(float(noise.mean())) < 5 * noise_std / math.sqrt(count)
    assert float(noise.std()) == pytest.approx(noise_std, rel=6 / math.sqrt(2 * count) + 0.01)
    # independent draws: no two masked positions get the same vector
    assert torch.unique(noise, dim=0).shape[0] == noise.shape[0]

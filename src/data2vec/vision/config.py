"""Configuration of the vision family (``model_type`` ``data2vec-vision``, a BEiT-style encoder)."""

from __future__ import annotations

import dataclasses

from ..core.config import TransformerConfig


def as_pair(value: int | list[int] | tuple[int, ...], name: str = "value") -> tuple[int, int]:
    """``224`` -> ``(224, 224)``; ``[224, 320]`` -> ``(224, 320)`` (height, width)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    raise ValueError(f"{name} must be an int or a pair of ints (height, width), got {value!r}")


@dataclasses.dataclass(kw_only=True)
class Data2VecVisionConfig(TransformerConfig):
    """Keys and defaults of the reference's ``Data2VecVisionConfig``.

    The official checkpoints set ``use_relative_position_bias=True`` (one bias table per
    layer); the class default, like the reference's, has no position information at all.
    """

    model_type = "data2vec-vision"

    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    layer_norm_eps: float = 1e-12
    image_size: int | list[int] = 224
    patch_size: int | list[int] = 16
    num_channels: int = 3
    use_mask_token: bool = False
    use_absolute_position_embeddings: bool = False
    use_relative_position_bias: bool = False
    use_shared_relative_position_bias: bool = False
    layer_scale_init_value: float = 0.1  # 0 (or less) disables layer scale
    drop_path_rate: float = 0.1  # stochastic depth of the last layer; 0 for the first, linear in between
    use_mean_pooling: bool = True
    # segmentation: hidden_states[k - 1] for each k feeds the feature pyramid (see heads.py)
    out_indices: list[int] = dataclasses.field(default_factory=lambda: [3, 5, 7, 11])
    pool_scales: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 3, 6])
    use_auxiliary_head: bool = True
    auxiliary_loss_weight: float = 0.4
    auxiliary_channels: int = 256
    auxiliary_num_convs: int = 1
    auxiliary_concat_input: bool = False
    semantic_loss_ignore_index: int = 255

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads ({self.num_attention_heads})"
            )
        image = as_pair(self.image_size, "image_size")
        patch = as_pair(self.patch_size, "patch_size")
        if min(patch) < 1 or image[0] < patch[0] or image[1] < patch[1]:
            raise ValueError(f"patch_size {self.patch_size} must be at least 1 and at most image_size {self.image_size}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if any(not isinstance(scale, int) or scale < 1 for scale in self.pool_scales):
            raise ValueError(f"pool_scales must be positive ints, got {self.pool_scales}")
        if self.auxiliary_num_convs < 0:
            raise ValueError(f"auxiliary_num_convs must be >= 0, got {self.auxiliary_num_convs}")

    def grid_for_image(self, height: int, width: int, *, uses_positions: bool, interpolate_pos_encoding: bool) -> tuple[int, int]:
        """(rows, columns) of patches of a ``height`` x ``width`` image; raises when the image is
        smaller than a patch, or needs resized position information that was not asked for."""
        patch = as_pair(self.patch_size)
        if height < patch[0] or width < patch[1]:
            raise ValueError(
                f"the image is {height}x{width} pixels, smaller than one {patch[0]}x{patch[1]} patch: "
                "resize it to at least the patch size (the image processor resizes to image_size)"
            )
        grid = (height // patch[0], width // patch[1])
        if grid != self.patch_grid and uses_positions and not interpolate_pos_encoding:
            raise ValueError(
                f"the image is {height}x{width} pixels ({grid[0]}x{grid[1]} patches) but the model's position "
                f"information was trained for image_size={self.image_size} ({self.patch_grid[0]}x"
                f"{self.patch_grid[1]} patches): pass interpolate_pos_encoding=True to resize it, "
                "or resize the images to image_size"
            )
        return grid

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(rows, columns) of patches of an ``image_size`` image."""
        image = as_pair(self.image_size, "image_size")
        patch = as_pair(self.patch_size, "patch_size")
        return (image[0] // patch[0], image[1] // patch[1])

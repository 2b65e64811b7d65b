"""The Keras layers use ``keras.ops`` only, so they also run on Keras' PyTorch backend: in a
fresh interpreter with ``KERAS_BACKEND=torch`` all three classes load a PyTorch folder and
agree with the PyTorch classes (masking, another image size, losses), and save it back."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytestmark = pytest.mark.tf
pytest.importorskip("tensorflow")

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
    import sys
    import keras
    import numpy as np
    import torch

    import data2vec
    from tests.vision.tf.common import assert_close, images, pytorch_folder

    assert keras.backend.backend() == "torch", keras.backend.backend()
    folder = sys.argv[1]
    cases = {
        "Data2VecVisionModel": dict(use_mask_token=True, use_absolute_position_embeddings=True,
                                    use_relative_position_bias=True, use_shared_relative_position_bias=True),
        "Data2VecVisionForImageClassification": dict(num_labels=3, use_relative_position_bias=True),
        "Data2VecVisionForSemanticSegmentation": dict(num_labels=3, use_relative_position_bias=True, num_hidden_layers=3,
                                                      out_indices=[1, 2, 3, 4], auxiliary_concat_input=True),
    }
    generator = torch.Generator().manual_seed(0)
    pixels = images(height=48, width=40)  # not the trained 32x32: positions are interpolated
    extra = {
        "Data2VecVisionModel": {"bool_masked_pos": torch.rand(2, 30, generator=generator) < 0.5},
        "Data2VecVisionForImageClassification": {"labels": torch.tensor([0, 2])},
        "Data2VecVisionForSemanticSegmentation": {"labels": torch.randint(0, 3, (2, 48, 40), generator=generator)},
    }
    for name, config in cases.items():
        ours_pt = pytorch_folder(name, f"{folder}/{name}", **config)
        ours_keras = getattr(data2vec, "TF" + name).from_pretrained(f"{folder}/{name}")
        kwargs = dict(output_hidden_states=True, output_attentions=True, interpolate_pos_encoding=True, **extra[name])
        with torch.no_grad():
            expected = ours_pt(pixels, **kwargs)
        out = ours_keras(pixels.numpy(), **{key: getattr(value, "numpy", lambda: value)() for key, value in kwargs.items()})
        for field in expected.keys():
            value = getattr(out, field)
            value = tuple(map(keras.ops.convert_to_numpy, value)) if isinstance(value, tuple) else keras.ops.convert_to_numpy(value)
            assert_close(value, getattr(expected, field), f"{name}.{field}")
        ours_keras.save_pretrained(f"{folder}/{name}-saved")
        again = getattr(data2vec, name).from_pretrained(f"{folder}/{name}-saved")
        for key, tensor in ours_pt.state_dict().items():
            assert torch.equal(again.state_dict()[key], tensor) or key.endswith("num_batches_tracked"), key
        print(name, "agrees")
"""


def test_the_layers_agree_with_pytorch_on_the_keras_torch_backend(tmp_path):
    environment = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(tmp_path)], cwd=ROOT, env=environment,
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:3] == [
        "Data2VecVisionModel agrees", "Data2VecVisionForImageClassification agrees", "Data2VecVisionForSemanticSegmentation agrees"
    ]

"""TensorFlow is an optional extra: ``import data2vec`` never imports it, and without it the
``TFData2VecVision*`` names raise an ImportError that says which extra to install.

Each check runs in a fresh interpreter. Without TensorFlow installed (CI's base environment)
the blocked-import test still runs, since it is about exactly that environment; the test that
TensorFlow stays unimported when it is installed skips without it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.tf

TF_NAMES = ["TFData2VecVisionModel", "TFData2VecVisionForImageClassification", "TFData2VecVisionForSemanticSegmentation"]


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "2", "HF_HUB_OFFLINE": "1"},
    )


def test_without_tensorflow_the_tf_names_name_the_extra():
    result = run_python(f"""
        import sys
        sys.modules["tensorflow"] = None  # `import tensorflow` now raises ImportError, as if not installed
        sys.modules["keras"] = None

        import data2vec
        from data2vec import *  # noqa: F403  (works: the TF names are not in __all__)
        assert "Data2VecVisionModel" in dir() and "TFData2VecVisionModel" not in dir()
        assert set({TF_NAMES!r}) <= set(dir(data2vec))

        for name in {TF_NAMES!r}:
            try:
                getattr(data2vec, name)
            except ImportError as error:
                print(name, "->", error)
            else:
                raise SystemExit(name + " did not raise")
        try:
            from data2vec import TFData2VecVisionModel  # noqa: F401
        except ImportError as error:
            print("from-import ->", error)
        try:
            import data2vec.vision.tf  # noqa: F401
        except ImportError as error:
            print("module ->", error)

        # the PyTorch classes are unaffected
        config = data2vec.Data2VecVisionConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=8, image_size=16, patch_size=8)
        print("pytorch output", tuple(data2vec.Data2VecVisionModel(config)(__import__("torch").zeros(1, 3, 16, 16))[0].shape))
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    messages = [line for line in lines if "->" in line]
    assert len(messages) == len(TF_NAMES) + 2, result.stdout
    for line in messages:
        assert 'pip install "data2vec[tf]"' in line and "TensorFlow" in line, line
    assert "pytorch output (1, 5, 8)" in lines


def test_import_data2vec_leaves_tensorflow_unimported():
    pytest.importorskip("tensorflow")
    result = run_python("""
        import sys
        import data2vec
        data2vec.Data2VecVisionModel, data2vec.Data2VecVisionForSemanticSegmentation, data2vec.Data2VecVisionConfig
        import data2vec.vision
        print(sorted(name for name in ("tensorflow", "keras") if name in sys.modules))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]"]  # (the TF tests show the names load once touched)

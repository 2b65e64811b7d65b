"""data2vec: the data2vec models for text, speech and images, their preprocessing, and the
data2vec self-supervised pretraining method.

Public names resolve on first use, so ``import data2vec`` stays light and never imports
TensorFlow; the ``TFData2VecVision*`` classes need ``pip install "data2vec[tf]"``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_NAMES = {
    "data2vec.text.config": ["Data2VecTextConfig"],
    "data2vec.text.model": [
        "Data2VecTextModel",
        "Data2VecTextForCausalLM",
        "Data2VecTextForMaskedLM",
        "Data2VecTextForSequenceClassification",
        "Data2VecTextForMultipleChoice",
        "Data2VecTextForTokenClassification",
        "Data2VecTextForQuestionAnswering",
    ],
    "data2vec.text.tokenizer": ["Data2VecTextTokenizer"],
    "data2vec.audio.config": ["Data2VecAudioConfig"],
    "data2vec.audio.model": ["Data2VecAudioModel"],
    "data2vec.audio.heads": [
        "Data2VecAudioForAudioFrameClassification",
        "Data2VecAudioForCTC",
        "Data2VecAudioForSequenceClassification",
        "Data2VecAudioForXVector",
    ],
    "data2vec.audio.features": ["Data2VecAudioFeatureExtractor"],
    "data2vec.audio.ctc_tokenizer": ["Data2VecAudioCTCTokenizer"],
    "data2vec.vision.config": ["Data2VecVisionConfig"],
    "data2vec.vision.model": ["Data2VecVisionModel"],
    "data2vec.vision.heads": ["Data2VecVisionForImageClassification", "Data2VecVisionForSemanticSegmentation"],
    "data2vec.vision.image_processor": ["Data2VecVisionImageProcessor"],
    "data2vec.vision.tf": [
        "TFData2VecVisionModel",
        "TFData2VecVisionForImageClassification",
        "TFData2VecVisionForSemanticSegmentation",
    ],
}
_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module_name = _MODULE_OF.get(name)
    if module_name is None:
        raise AttributeError(f"module 'data2vec' has no attribute {name!r}")
    if module_name == "data2vec.vision.tf":
        try:
            import tensorflow  # noqa: F401
            import keras  # noqa: F401
        except ImportError as error:
            raise ImportError(
                f"{name} needs TensorFlow and Keras 3, which are not installed: pip install \"data2vec[tf]\""
            ) from error
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

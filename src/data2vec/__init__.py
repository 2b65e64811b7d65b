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
    "data2vec.auto": [
        "AutoConfig",
        "AutoModel",
        "AutoModelForMaskedLM",
        "AutoModelForCausalLM",
        "AutoModelForSequenceClassification",
        "AutoModelForMultipleChoice",
        "AutoModelForTokenClassification",
        "AutoModelForQuestionAnswering",
        "AutoModelForCTC",
        "AutoModelForAudioClassification",
        "AutoModelForAudioFrameClassification",
        "AutoModelForAudioXVector",
        "AutoModelForImageClassification",
        "AutoModelForSemanticSegmentation",
        "AutoProcessor",
    ],
    "data2vec.pipelines": ["pipeline"],
    "data2vec.vision.tf": [
        "TFData2VecVisionModel",
        "TFData2VecVisionForImageClassification",
        "TFData2VecVisionForSemanticSegmentation",
    ],
}
_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}
_OPTIONAL = {"data2vec.vision.tf"}  # needs the `tf` extra; raises an ImportError that says so
# `from data2vec import *` leaves out the TensorFlow classes, so that it works (and stays
# light) without the extra; they are still importable by name.
__all__ = sorted(name for name, module in _MODULE_OF.items() if module not in _OPTIONAL)


def __getattr__(name: str) -> Any:
    module_name = _MODULE_OF.get(name)
    if module_name is None:
        raise AttributeError(f"module 'data2vec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))

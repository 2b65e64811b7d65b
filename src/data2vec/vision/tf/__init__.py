"""data2vec vision on Keras 3 (TensorFlow backend): ``TFData2VecVisionModel``,
``TFData2VecVisionForImageClassification``, ``TFData2VecVisionForSemanticSegmentation``.

Same configuration, inputs (``pixel_values`` NCHW), outputs and checkpoint files as the
PyTorch classes. Needs the extra: ``pip install "data2vec[tf]"``.
"""

INSTALL_HINT = 'pip install "data2vec[tf]"'

try:
    import tensorflow  # noqa: F401  (the backend the classes are built and tested for)
    import keras
except ImportError as error:
    raise ImportError(
        f"data2vec's TensorFlow classes (TFData2VecVision*) need TensorFlow and Keras 3, which are not "
        f"installed ({error}): {INSTALL_HINT}"
    ) from error
if int(keras.__version__.split(".")[0]) < 3:
    raise ImportError(f"data2vec's TensorFlow classes need Keras 3, found keras {keras.__version__}: {INSTALL_HINT}")

from .heads import TFData2VecVisionForImageClassification, TFData2VecVisionForSemanticSegmentation  # noqa: E402
from .model import TFData2VecVisionModel, TFData2VecVisionPreTrainedModel  # noqa: E402

__all__ = [
    "TFData2VecVisionForImageClassification",
    "TFData2VecVisionForSemanticSegmentation",
    "TFData2VecVisionModel",
    "TFData2VecVisionPreTrainedModel",
]

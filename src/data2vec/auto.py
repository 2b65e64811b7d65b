"""Auto lookup: the configuration, model and preprocessor class of a saved folder or Hub repo,
chosen from its ``config.json``.

``model_type`` (``data2vec-text``, ``data2vec-audio``, ``data2vec-vision``) picks the family.
Then each Auto class maps the family to one class, with the names and the choices of the
reference library's Auto classes:

- ``AutoConfig``: the family's configuration class.
- ``AutoModel``: the family's backbone, whatever head the folder was saved from (the head's
  weights are reported as unused, as the concrete backbone class reports them).
- ``AutoModelFor<Task>``: the family's class for that task; a family without such a head is
  an error that names the model types the task supports.
- ``AutoModel.saved_class(folder)``: the exact class named in ``architectures`` (the class the
  folder was saved from), falling back to the backbone when the file names none of ours.
- ``AutoProcessor``: the tokenizer (text), image processor (vision) or feature extractor
  (audio; paired with the CTC tokenizer in a :class:`Data2VecAudioProcessor` when the folder
  also holds a ``vocab.json``).

A ``config.json`` without ``model_type`` is placed by the class in ``architectures``. Every
``from_pretrained`` takes a folder or a Hub repo id (resolved like the families' own)::

    model = AutoModelForCTC.from_pretrained("facebook/data2vec-audio-base-960h")
    processor = AutoProcessor.from_pretrained("facebook/data2vec-audio-base-960h")
    saved = AutoModel.saved_class(folder).from_pretrained(folder)  # the model as it was saved

Classes are named, not imported, here: each resolves through the package's public names on
first use, so looking up a text model never imports the audio or vision code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from . import _NAMES
from .core.config import CONFIG_NAME, Config
from .core.hub import resolve_file
from .core.preprocessing import PretrainedFiles, read_json

# The package's table of public names lists the Auto classes; Data2VecAudioProcessor is only
# reachable from this module.
__all__ = [*_NAMES[__name__], "Data2VecAudioProcessor"]

PathLike = str | os.PathLike
Source = str | os.PathLike | Config  # a folder, a Hub repo id or a configuration

TEXT, AUDIO, VISION = "data2vec-text", "data2vec-audio", "data2vec-vision"


def _family(model_type: str) -> tuple[str, str, tuple[str, ...]]:
    """The configuration, the backbone and every PyTorch model class of a family, by public
    name, as the package's table of names lists them (``data2vec.<family>.config``, the
    backbone first in ``.model``, the heads in ``.model`` / ``.heads``)."""
    package = "data2vec." + model_type.removeprefix("data2vec-")
    (config,) = _NAMES[f"{package}.config"]
    models = (*_NAMES[f"{package}.model"], *_NAMES.get(f"{package}.heads", ()))
    return config, models[0], models


# model_type -> (configuration, backbone, every PyTorch model class of the family).
_FAMILIES = {model_type: _family(model_type) for model_type in (TEXT, AUDIO, VISION)}
# A class name in `architectures` -> its model_type (TensorFlow names are those without "TF").
_FAMILY_OF_CLASS = {name: model_type for model_type, (_, _, names) in _FAMILIES.items() for name in names}

# The keyword arguments of a `from_pretrained` that locate the files of a Hub repo id.
_HUB_OPTIONS = ("revision", "cache_dir")


def _public(name: str) -> Any:
    """A public class of the package, by name (resolved lazily, like ``data2vec.<name>``)."""
    import data2vec

    return getattr(data2vec, name)


def _supported() -> str:
    return ", ".join(sorted(_FAMILIES))


def _our_class_name(architecture: Any) -> str | None:
    """The PyTorch class of ours that an ``architectures`` entry names, if any."""
    if not isinstance(architecture, str):
        return None
    name = architecture.removeprefix("TF")
    return name if name in _FAMILY_OF_CLASS else None


def _model_type_of(values: dict[str, Any], source: str) -> str:
    """The family of a ``config.json`` dict: its ``model_type``, else the class in ``architectures``."""
    model_type = values.get("model_type")
    if model_type is None:
        for architecture in values.get("architectures") or []:
            name = _our_class_name(architecture)
            if name is not None:
                return _FAMILY_OF_CLASS[name]
        raise ValueError(
            f"{source} has no model_type and its architectures ({values.get('architectures')}) name no "
            f"data2vec class: add \"model_type\" (one of {_supported()})"
        )
    if model_type not in _FAMILIES:
        raise ValueError(
            f"{source} has model_type {model_type!r}, which is not a data2vec model; supported: {_supported()}"
        )
    return model_type


# ---------------------------------------------------------------------- configuration


class AutoConfig:
    """The family's configuration class, chosen by ``model_type``. Not instantiable."""

    def __init__(self) -> None:
        raise TypeError(
            "AutoConfig is not instantiated: use AutoConfig.from_pretrained(folder) or AutoConfig.for_model(model_type)"
        )

    @staticmethod
    def config_class(model_type: str) -> type[Config]:
        """The configuration class of ``model_type``."""
        if model_type not in _FAMILIES:
            raise ValueError(f"unknown model_type {model_type!r}; supported: {_supported()}")
        return _public(_FAMILIES[model_type][0])

    @classmethod
    def for_model(cls, model_type: str, **values: Any) -> Config:
        """A new configuration of ``model_type`` with the given keys (the others default)."""
        return cls.config_class(model_type)(**values)

    @classmethod
    def from_dict(cls, values: dict[str, Any], **overrides: Any) -> Config:
        """The configuration that a ``config.json`` dict describes; ``overrides`` replace its keys."""
        model_type = _model_type_of(values, "the configuration dict")
        return cls.config_class(model_type).from_dict(values, **overrides)

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: PathLike,
        *,
        revision: str | None = None,
        cache_dir: PathLike | None = None,
        **overrides: Any,
    ) -> Config:
        """Read ``config.json`` of a folder or Hub repo id (or a path to the JSON file itself);
        ``overrides`` replace its keys."""
        if Path(path_or_repo).is_file():
            path = Path(path_or_repo)
        else:
            path = resolve_file(path_or_repo, CONFIG_NAME, revision=revision, cache_dir=cache_dir)
        values = read_json(path)
        model_type = _model_type_of(values, str(path))
        return cls.config_class(model_type).from_dict(values, **overrides)


# ---------------------------------------------------------------------- models


class _AutoModelBase:
    """Maps ``model_type`` to one model class; subclasses set ``_classes``.

    ``**hub`` below stands for the keyword arguments that locate the files of a Hub repo id:
    ``revision`` and ``cache_dir``.
    """

    _classes: ClassVar[dict[str, str]] = {}

    def __init__(self) -> None:
        raise TypeError(
            f"{type(self).__name__} is not instantiated: use {type(self).__name__}.from_pretrained(folder) "
            f"or {type(self).__name__}.from_config(config)"
        )

    @classmethod
    def supported_model_types(cls) -> list[str]:
        return sorted(cls._classes)

    @classmethod
    def _config_of(cls, source: Source, *, revision: str | None = None, cache_dir: PathLike | None = None) -> Config:
        if isinstance(source, Config):
            return source
        return AutoConfig.from_pretrained(source, revision=revision, cache_dir=cache_dir)

    @classmethod
    def class_for(cls, source: Source, **hub: Any) -> type:
        """The class that ``from_pretrained`` / ``from_config`` build for a folder, Hub repo id or
        configuration."""
        config = cls._config_of(source, **hub)
        name = cls._classes.get(config.model_type)
        if name is None:
            message = (
                f"{cls.__name__} has no class for model_type {config.model_type!r}; it supports "
                f"{', '.join(cls.supported_model_types())}."
            )
            saved = _saved_class_name(config)
            if saved is not None:
                message += f" This model was saved from {saved}: {_auto_classes_for(saved)}."
            raise ValueError(message)
        return _public(name)

    @classmethod
    def from_config(cls, config: Config) -> Any:
        """A randomly initialised model of the class for ``config.model_type``."""
        return cls.class_for(config)(config)

    @classmethod
    def from_pretrained(cls, path_or_repo: PathLike, *, config: Config | None = None, **kwargs: Any) -> Any:
        """Load a folder or Hub repo id with the class for its ``model_type``. The keyword
        arguments go to that class's ``from_pretrained``: ``revision`` and ``cache_dir`` (which
        also locate ``config.json`` here), ``dtype``, ``device``, ``ignore_mismatched_sizes``,
        ``output_loading_info`` and ``config.json`` keys such as ``num_labels``."""
        if config is None:
            hub = {key: kwargs[key] for key in _HUB_OPTIONS if key in kwargs}
            config = AutoConfig.from_pretrained(path_or_repo, **hub)
        return cls.class_for(config).from_pretrained(path_or_repo, config=config, **kwargs)


def _saved_class_name(config: Config) -> str | None:
    """The class of ours that ``config.architectures`` names for this family, if any."""
    for architecture in config.architectures or []:
        name = _our_class_name(architecture)
        if name is None:
            continue
        if _FAMILY_OF_CLASS[name] != config.model_type:
            raise ValueError(
                f"config.json is inconsistent: model_type {config.model_type!r} but architectures names {architecture} "
                f"(a {_FAMILY_OF_CLASS[name]} class)"
            )
        return name
    return None


def _auto_classes_for(class_name: str) -> str:
    """A hint naming the task Auto classes that build ``class_name``."""
    names = [auto.__name__ for auto in _TASK_CLASSES if class_name in auto._classes.values()]
    if not names:
        return "load it with AutoModel or AutoModel.saved_class(folder)"
    return "load it with " + " or ".join(names)


class AutoModel(_AutoModelBase):
    """The family's backbone (``Data2VecTextModel``, ``Data2VecAudioModel``,
    ``Data2VecVisionModel``), whatever head the folder was saved from."""

    _classes = {model_type: backbone for model_type, (_, backbone, _) in _FAMILIES.items()}

    @classmethod
    def saved_class(cls, source: Source, **hub: Any) -> type:
        """The class the folder was saved from: the class of ours in ``architectures`` (a
        ``TF...`` name gives the PyTorch class of the same name), else the family's backbone
        (e.g. for a backbone exported without ``architectures``).

        ``AutoModel.saved_class(folder).from_pretrained(folder)`` reloads the model as it was saved.
        """
        config = cls._config_of(source, **hub)
        name = _saved_class_name(config)
        return _public(name) if name is not None else cls.class_for(config)


# The task Auto classes: name -> (the one model_type it serves, the class it builds, its docstring),
# with the choices of the reference library's Auto tables.
_TASKS: dict[str, tuple[str, str, str]] = {
    "AutoModelForMaskedLM": (TEXT, "Data2VecTextForMaskedLM", "Masked language modelling: data2vec-text."),
    "AutoModelForCausalLM": (
        TEXT,
        "Data2VecTextForCausalLM",
        "Left-to-right language modelling: data2vec-text (set ``is_decoder=True``).",
    ),
    "AutoModelForSequenceClassification": (
        TEXT,
        "Data2VecTextForSequenceClassification",
        "Text (pair) classification and regression: data2vec-text. For audio use "
        "``AutoModelForAudioClassification``, as in the reference library.",
    ),
    "AutoModelForMultipleChoice": (TEXT, "Data2VecTextForMultipleChoice", "Multiple choice: data2vec-text."),
    "AutoModelForTokenClassification": (
        TEXT,
        "Data2VecTextForTokenClassification",
        "Token classification (e.g. named entities): data2vec-text.",
    ),
    "AutoModelForQuestionAnswering": (
        TEXT,
        "Data2VecTextForQuestionAnswering",
        "Extractive question answering: data2vec-text.",
    ),
    "AutoModelForCTC": (AUDIO, "Data2VecAudioForCTC", "Speech recognition with CTC: data2vec-audio."),
    "AutoModelForAudioClassification": (
        AUDIO,
        "Data2VecAudioForSequenceClassification",
        "Utterance classification: data2vec-audio.",
    ),
    "AutoModelForAudioFrameClassification": (
        AUDIO,
        "Data2VecAudioForAudioFrameClassification",
        "Frame classification (e.g. speaker diarization): data2vec-audio.",
    ),
    "AutoModelForAudioXVector": (AUDIO, "Data2VecAudioForXVector", "Speaker embeddings (x-vectors): data2vec-audio."),
    "AutoModelForImageClassification": (
        VISION,
        "Data2VecVisionForImageClassification",
        "Image classification: data2vec-vision.",
    ),
    "AutoModelForSemanticSegmentation": (
        VISION,
        "Data2VecVisionForSemanticSegmentation",
        "Semantic segmentation (UperNet head): data2vec-vision.",
    ),
}


def _task_class(name: str, model_type: str, class_name: str, doc: str) -> type[_AutoModelBase]:
    """The Auto class ``name``, which builds ``class_name`` for ``model_type`` and nothing else."""
    namespace = {"__doc__": doc, "__module__": __name__, "__qualname__": name, "_classes": {model_type: class_name}}
    return type(name, (_AutoModelBase,), namespace)


_TASK_CLASSES = tuple(_task_class(name, *entry) for name, entry in _TASKS.items())
# Each is a module attribute under its own name (`from data2vec.auto import AutoModelForCTC`).
globals().update({auto.__name__: auto for auto in _TASK_CLASSES})


# ---------------------------------------------------------------------- preprocessing

PROCESSOR_CONFIG_NAME = "processor_config.json"  # a processor's files (reference library >= 5)
# The `config_file` of both the feature extractor and the image processor, named here so that
# telling the family of a folder without config.json apart imports neither (nor torch).
PREPROCESSOR_CONFIG_NAME = "preprocessor_config.json"
# model_type -> (preprocessor class read from its `config_file`, its key in processor_config.json)
_PREPROCESSORS = {
    AUDIO: ("Data2VecAudioFeatureExtractor", "feature_extractor"),
    VISION: ("Data2VecVisionImageProcessor", "image_processor"),
}


class Data2VecAudioProcessor:
    """The feature extractor and the CTC tokenizer of a speech recognition checkpoint, as one
    object (the reference library's ``Wav2Vec2Processor`` plays this part).

    ``processor(audio, sampling_rate=16000)`` gives the feature extractor's ``input_values``
    (+ ``attention_mask``); ``text=`` adds CTC ``labels`` (padded with -100, ready for
    ``Data2VecAudioForCTC``); ``processor(text=...)`` alone encodes with the tokenizer.
    ``decode`` / ``batch_decode`` are the tokenizer's. Both parts stay reachable as
    ``processor.feature_extractor`` and ``processor.tokenizer``.
    """

    def __init__(self, feature_extractor: Any, tokenizer: Any) -> None:
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    def __call__(
        self,
        audio: Any = None,
        *,
        text: str | list[str] | None = None,
        sampling_rate: int | None = None,
        return_tensors: str | None = None,
        **audio_options: Any,
    ) -> Any:
        """Waveform(s) to model inputs and/or transcript(s) to labels. ``audio_options`` go to
        the feature extractor (``padding``, ``max_length``, ...). ``labels`` are a tensor with
        ``return_tensors="pt"``, a numpy array otherwise."""
        if audio is None and text is None:
            raise ValueError("pass audio (waveforms), text (transcripts) or both")
        if audio is None:
            return self.tokenizer(text, padding=True, return_tensors=return_tensors)
        batch = self.feature_extractor(audio, sampling_rate=sampling_rate, return_tensors=return_tensors, **audio_options)
        if text is not None:
            batch["labels"] = self.tokenizer.encode_labels(text, return_tensors=return_tensors or "np")
        return batch

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        return self.tokenizer.decode(*args, **kwargs)

    def batch_decode(self, *args: Any, **kwargs: Any) -> Any:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def save_pretrained(self, directory: PathLike) -> Path:
        """Write ``preprocessor_config.json`` and the tokenizer's files into ``directory``."""
        self.feature_extractor.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        return Path(directory)

    @classmethod
    def from_pretrained(
        cls, path_or_repo: PathLike, *, revision: str | None = None, cache_dir: PathLike | None = None
    ) -> Data2VecAudioProcessor:
        """Read ``preprocessor_config.json`` and ``vocab.json`` (+ tokenizer settings) from a folder or Hub repo id."""
        files = PretrainedFiles(path_or_repo, revision=revision, cache_dir=cache_dir)
        return cls(
            _load_preprocessor(AUDIO, files, {}),
            _public("Data2VecAudioCTCTokenizer").from_pretrained(path_or_repo, revision=revision, cache_dir=cache_dir),
        )

    def __repr__(self) -> str:
        tokenizer = type(self.tokenizer).__name__
        return f"{type(self).__name__}(feature_extractor={self.feature_extractor!r}, tokenizer={tokenizer})"


class AutoProcessor:
    """The preprocessor of a folder or Hub repo id:

    - data2vec-text: ``Data2VecTextTokenizer`` (``tokenizer.json``, or ``vocab.json`` + ``merges.txt``);
    - data2vec-vision: ``Data2VecVisionImageProcessor`` (``preprocessor_config.json``);
    - data2vec-audio: ``Data2VecAudioFeatureExtractor`` (``preprocessor_config.json``), or a
      :class:`Data2VecAudioProcessor` pairing it with the ``Data2VecAudioCTCTokenizer`` when
      the folder also holds a CTC vocabulary (``vocab.json``); a folder with only the
      vocabulary gives the CTC tokenizer.

    The family comes from ``model_type`` in ``config.json``; a folder without one (e.g. written
    by a preprocessor's own ``save_pretrained``) is placed by its preprocessor files.
    """

    def __init__(self) -> None:
        raise TypeError("AutoProcessor is not instantiated: use AutoProcessor.from_pretrained(folder)")

    @classmethod
    def from_pretrained(
        cls, path_or_repo: PathLike, *, revision: str | None = None, cache_dir: PathLike | None = None, **overrides: Any
    ) -> Any:
        """Load the preprocessor; ``overrides`` go to its ``from_pretrained`` (e.g. ``model_max_length``)."""
        files = PretrainedFiles(path_or_repo, revision=revision, cache_dir=cache_dir)
        config_path = files.find_optional(CONFIG_NAME)
        if config_path is not None:
            model_type = _model_type_of(read_json(config_path), str(config_path))
        else:
            model_type = _model_type_from_preprocessor_files(files)

        hub = {"revision": revision, "cache_dir": cache_dir}
        if model_type == TEXT:
            return _public("Data2VecTextTokenizer").from_pretrained(path_or_repo, **hub, **overrides)
        if model_type == VISION:
            return _load_preprocessor(VISION, files, overrides)

        from .audio.ctc_tokenizer import VOCAB_FILE

        if files.find_optional(VOCAB_FILE) is None:
            return _load_preprocessor(AUDIO, files, overrides)
        if not _has_preprocessor_settings(AUDIO, files):
            return _public("Data2VecAudioCTCTokenizer").from_pretrained(path_or_repo, **hub, **overrides)
        if overrides:
            raise TypeError(
                f"AutoProcessor.from_pretrained got {sorted(overrides)}, but this folder gives a feature extractor "
                "and a CTC tokenizer: load them separately to change their settings"
            )
        return Data2VecAudioProcessor.from_pretrained(path_or_repo, **hub)


def _has_preprocessor_settings(model_type: str, files: PretrainedFiles) -> bool:
    """Whether the folder holds the settings of the family's feature extractor / image processor."""
    class_name, section_key = _PREPROCESSORS[model_type]
    if files.find_optional(_public(class_name).config_file) is not None:
        return True
    return isinstance(files.read_optional_json(PROCESSOR_CONFIG_NAME).get(section_key), dict)


def _load_preprocessor(model_type: str, files: PretrainedFiles, overrides: dict[str, Any]) -> Any:
    """The family's feature extractor / image processor from its ``config_file``
    (``preprocessor_config.json``), or from its section of ``processor_config.json`` (where a
    processor of the reference library writes these settings since its version 5)."""
    class_name, section_key = _PREPROCESSORS[model_type]
    preprocessor_class = _public(class_name)
    if files.find_optional(preprocessor_class.config_file) is None:
        processor_path = files.find_optional(PROCESSOR_CONFIG_NAME)
        section = read_json(processor_path).get(section_key) if processor_path is not None else None
        if isinstance(section, dict):
            if model_type == AUDIO:
                return preprocessor_class.from_dict({**section, **overrides}, source=f"{processor_path} ({section_key})")
            return preprocessor_class.from_dict(section, **overrides)
    # Raises the one-line "preprocessor_config.json not found in ..." when it is missing.
    return preprocessor_class.from_pretrained(
        files.path_or_repo, revision=files.revision, cache_dir=files.cache_dir, **overrides
    )


def _model_type_from_preprocessor_files(files: PretrainedFiles) -> str:
    """The family of a folder without ``config.json``, from the preprocessor files it holds."""
    preprocessor_path = files.find_optional(PREPROCESSOR_CONFIG_NAME) or files.find_optional(PROCESSOR_CONFIG_NAME)
    if preprocessor_path is not None:
        values = read_json(preprocessor_path)
        if "image_processor" in values or "image_processor_type" in values or "crop_size" in values:
            return VISION
        if "feature_extractor" in values or "feature_extractor_type" in values or "sampling_rate" in values:
            return AUDIO
    # The text tokenizer's module is light (no torch); the CTC tokenizer shares its config_file.
    from .text import tokenizer as text_tokenizer

    tokenizer_config_file = text_tokenizer.Data2VecTextTokenizer.config_file
    tokenizer_config_path = files.find_optional(tokenizer_config_file)
    if tokenizer_config_path is not None:
        tokenizer_class = read_json(tokenizer_config_path).get("tokenizer_class", "")
        if "CTC" in tokenizer_class:
            return AUDIO
        if "Roberta" in tokenizer_class:
            return TEXT
    text_files = (text_tokenizer.TOKENIZER_FILE, text_tokenizer.MERGES_FILE)
    if any(files.find_optional(name) is not None for name in text_files):
        return TEXT
    looked_for = (PREPROCESSOR_CONFIG_NAME, PROCESSOR_CONFIG_NAME, tokenizer_config_file, *text_files)
    raise FileNotFoundError(
        f"{CONFIG_NAME} not found in {str(files.path_or_repo)!r}, nor preprocessor files to tell the model family "
        f"({', '.join(looked_for)})"
    )

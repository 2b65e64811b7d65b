"""The ``data2vec`` command."""

from __future__ import annotations

import argparse
import sys

# the exceptions that mean a user's mistake (a wrong file, value or option): `error: ...` and exit
# status 2; anything else is a bug: exit status 1 and a hint to rerun with --debug
USER_ERRORS = (ValueError, OSError)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, USER_ERRORS) else f"{type(error).__name__}: {text}"


# the pretraining experiments, one per modality (their aliases, image and speech, work too), and
# the masked-LM example
DEMOS = ("vision", "audio", "text", "fill-mask")


def _demo_choice(value: str) -> str:
    """A demo's name from a modality name or alias (``image`` -> ``vision``, ``speech`` -> ``audio``)."""
    from .registry import MODALITIES

    name = MODALITIES.get(value).name if value in MODALITIES else value
    if name not in DEMOS:
        raise argparse.ArgumentTypeError(
            f"no demo for {value!r}: choose one of {', '.join(DEMOS)} (image and speech name vision and audio)"
        )
    return name


def _demo(args: argparse.Namespace) -> int:
    if args.versions and args.modality == "fill-mask":
        raise ValueError("--versions compares the pretraining versions on the vision, audio or text demo, not fill-mask")
    if args.modality == "fill-mask":
        from .demos.fill_mask import run

        summary = run(out_dir=args.out or "runs/fill-mask-demo", steps=args.steps or 600, seed=args.seed)
        return 0 if summary["reload_identical"] else 1
    from importlib import import_module

    if args.versions:
        from .demos.versions import run as compare_versions

        compare_versions(
            args.modality, args.out, steps=args.steps, steps2=args.steps2, pretrain_seeds=args.pretrain_seeds,
            finetune_seeds=args.finetune_seeds, workers=args.workers,
        )  # fmt: skip
        return 0
    run = import_module(f".demos.{args.modality}", __package__).run
    run(
        out_dir=args.out or f"runs/{args.modality}-demo",
        pretrain_steps=args.steps,
        pretrain_seeds=args.pretrain_seeds,
        finetune_seeds=args.finetune_seeds,
        workers=args.workers,
    )
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    import logging
    import os

    from .pretraining.recipe import Recipe, RecipeError
    from .pretraining.trainer import CollapseError, Pretrainer, TrainingDivergedError

    package_logger = logging.getLogger("data2vec")
    if os.environ.get("RANK", "0") == "0" and not package_logger.handlers:  # under torchrun, rank 0 reports
        package_logger.addHandler(logging.StreamHandler())
        package_logger.setLevel(logging.INFO)

    try:
        recipe = Recipe.load(args.recipe)
        if args.steps is not None:
            recipe = recipe.with_total_steps(args.steps)
        if args.device is not None:
            recipe = recipe.replace(device=args.device)
    except RecipeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out_dir = args.out or f"runs/{recipe.name}"
    try:
        if (args.extend_schedule or args.allow_recipe_change) and not args.resume:
            raise RecipeError("--extend-schedule and --allow-recipe-change apply to a resumed run: add --resume")
        trainer = Pretrainer(
            recipe, args.data, out_dir, resume=args.resume, progress=not args.no_progress,
            extend_schedule=args.extend_schedule, allow_recipe_change=args.allow_recipe_change,
        )
    except (RecipeError, FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        result = trainer.train(stop_after=args.stop_after)
    except (CollapseError, TrainingDivergedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("aborted by a second Ctrl-C: this update was not saved (the last checkpoint is intact)", file=sys.stderr)
        return 130
    finally:
        trainer.close()
    if trainer.dist.is_main and not result.interrupted:
        print(f"update {result.step} of {recipe.optim.total_steps}; checkpoint {result.checkpoint}")
        plot = f"; plot {trainer.plot_path}" if trainer.plot_path.is_file() else ""  # matplotlib drew it
        print(f"log {trainer.log_path}{plot}")
        print(f"export the backbone with: data2vec export-backbone {result.checkpoint} <folder>")
    return 130 if result.interrupted else 0


def _export_backbone(args: argparse.Namespace) -> int:
    from .pretraining.export import export_backbone

    try:
        folder = export_backbone(args.checkpoint, args.directory, which="teacher" if args.teacher else "student")
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {'teacher' if args.teacher else 'student'} backbone to {folder}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import OnnxCheckError, export_onnx

    try:
        result = export_onnx(
            args.model, args.output, task=args.task, opset=args.opset, check=not args.no_check, atol=args.atol
        )
    except ImportError as error:  # the onnx extra is not installed
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OnnxCheckError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(result.describe())
    if not result.passed:
        worst = max(result.max_abs_difference.values())
        print(
            f"error: onnxruntime's outputs differ from PyTorch's by {worst:.2g} > --atol {args.atol:g}; "
            f"the file is written, but check it before use",
            file=sys.stderr,
        )
        return 1
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from .training.run import known_options, load_options, run_finetune

    flags = {name: getattr(args, name) for name in known_options() if hasattr(args, name)}
    flags["progress"] = False if args.no_progress else None
    flags["resume"] = True if args.resume else None
    result = run_finetune(load_options(args.config, flags))
    if result.get("interrupted"):
        print(f"stopped at step {result['step']}; continue with the same command and --resume", file=sys.stderr)
        return 130
    best = f"; best {result['best_metric']:.4g} at step {result['best_step']}" if result.get("best_step") is not None else ""
    print(f"step {result['step']}{best}; model in {result['output']}")
    return 0


# (flag, type, help) of `data2vec finetune`; each flag's option name is the flag with underscores
_FINETUNE_FLAGS = [
    ("--task", str, "the task (see the list above)"),
    ("--model", str, "checkpoint folder or Hub id (ours, `data2vec export-backbone`, or a Hugging Face folder)"),
    ("--train", str, "training data (format by task, above)"),
    ("--eval", str, "evaluation data: the best checkpoint is chosen on it by the task's metric"),
    ("--output", str, "output folder: the model, its preprocessor files, checkpoint/, log.jsonl and curves.png"),
    ("--config", str, "YAML file whose keys are these flags' names (flags given here win)"),
    ("--epochs", float, "training epochs (default 3)"),
    ("--max-steps", int, "optimizer steps; wins over --epochs"),
    ("--batch-size", int, "examples per process and micro-batch (default 8)"),
    ("--gradient-accumulation", int, "micro-batches per optimizer step (default 1)"),
    ("--learning-rate", float, "peak learning rate (default 5e-5)"),
    ("--weight-decay", float, "AdamW weight decay (default 0.01)"),
    ("--schedule", str, "linear, cosine or constant after the warmup (default linear)"),
    ("--warmup-ratio", float, "fraction of the steps spent warming up (default 0.1)"),
    ("--layer-decay", float, "layer-wise learning-rate decay, e.g. 0.65 (default off)"),
    ("--clip-norm", float, "gradient clipping norm (default 1.0; 0 turns it off)"),
    ("--precision", str, "fp32 or bf16 (autocast; default fp32)"),
    ("--eval-every", int, "evaluate and checkpoint every N steps (default: each epoch)"),
    ("--early-stopping-patience", int, "stop after N evaluations without improvement"),
    ("--log-every", int, "log every N steps (default 10)"),
    ("--seed", int, "seed of the initialisation of new heads, the data order and dropout (default 0)"),
    ("--num-workers", int, "data loading processes (default 0)"),
    ("--text-column", str, "text tasks: the text column (default text)"),
    ("--text-pair-column", str, "text tasks: the second text of a pair (default text_pair, if present)"),
    ("--label-column", str, "the label column (default label)"),
    ("--max-length", int, "text tasks: tokens per input (default 512)"),
    ("--doc-stride", int, "question answering: token overlap of the windows of a long context (default 128)"),
    ("--mlm-probability", float, "fill-mask: fraction of the tokens masked (default 0.15)"),
    ("--max-seconds", float, "audio tasks: longer clips are cropped to this many seconds"),
    ("--sampling-rate", int, "audio tasks without a preprocessor_config.json: the rate audio is resampled to (default 16000)"),
    ("--image-size", int, "image tasks: the input size (default: the checkpoint's; others interpolate the positions)"),
    ("--eval-batch-size", int, "examples per evaluation batch (default: --batch-size)"),
]

_FINETUNE_DATA = """tasks and their data:
  text-classification, text-regression   CSV/TSV/JSONL with columns text (+ text_pair) and label
  token-classification                   CoNLL: a token and its tag per line, blank lines between sentences
  question-answering                     SQuAD JSON (v1.1 or v2.0)
  multiple-choice                        CSV/JSONL with text, choice0 .. choiceN (or a JSON list choices) and label
  fill-mask                              CSV/JSONL with a text column
  speech-recognition                     CSV/TSV manifest with path and text columns
  audio-classification                   CSV/TSV manifest with path and label
  audio-frame-classification             CSV/TSV manifest with path and labels (one label per 20 ms frame)
  speaker-verification                   CSV/TSV manifest with path and label (the speaker)
  image-classification                   ImageFolder: a folder per class
  semantic-segmentation                  a folder with images/ and masks/ (PNG class ids, same file stems)
On several GPUs or machines: torchrun --nproc_per_node N -m data2vec.cli finetune ..."""


def _infer(args: argparse.Namespace) -> int:
    """A task command: the pipeline of ``args.command`` on the inputs, one result per input."""
    import json

    from .pipelines import pipeline_class

    cls = pipeline_class(args.command)
    options = {option.name: getattr(args, option.name, option.flag_default) for option in cls.options}
    options.update(cls.command_call_options)
    named = cls.read_inputs(args.inputs, options)  # a missing input fails before the model loads
    if not named:
        raise ValueError("no inputs: the files and folders given hold nothing to run on")
    pipe = cls.from_pretrained(
        args.model, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
        progress=False if args.no_progress else None,
    )
    call_options = {option.name: options[option.name] for option in cls.options if not option.cli_only}
    results = pipe.iterate([item for _, item in named], **call_options)
    for (name, _), result in zip(named, results):
        exported = pipe.export(name, result, options)
        if args.json:
            print(json.dumps({"input": name, "result": exported}, ensure_ascii=False), flush=True)
        else:
            print(pipe.describe(name, exported), flush=True)
    return 0


def _add_task_commands(commands: argparse._SubParsersAction, argv: list[str]) -> None:
    """One command per inference task. Only the command being run imports its pipeline (and
    torch) to add the task's own options; the others list their one-line help."""
    from .pipelines import TASKS, pipeline_class

    invoked = next((arg for arg in argv if not arg.startswith("-")), None)
    for task, (_, summary) in TASKS.items():
        command = commands.add_parser(
            task, help=summary, description=f"{summary[0].upper()}{summary[1:]}.",
            epilog=_INFERENCE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_argument("inputs", nargs="+", metavar="INPUT", help=_INPUT_HELP[TASKS[task][0]])
        command.add_argument("--model", required=True, help="checkpoint folder (Hugging Face layout) or Hub id")
        command.add_argument("--device", default=None, help="auto (default: cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
        command.add_argument("--dtype", default=None, help="float32 (default), bfloat16, or float16 (GPU only)")
        command.add_argument("--batch-size", type=int, default=8, help="inputs per model call, sorted by length (default 8)")
        command.add_argument("--json", action="store_true", help="one JSON object per input: {\"input\": ..., \"result\": ...}")
        command.add_argument("--no-progress", action="store_true", help="no progress bar")
        command.set_defaults(handler=_infer)
        if task == invoked:
            for option in pipeline_class(task).options:
                if option.command:
                    _add_option(command, option)


def _add_option(command: argparse.ArgumentParser, option) -> None:
    """A pipeline option as a flag: ``--name`` / ``--no-name`` for a boolean, else ``--name VALUE``."""
    default = option.flag_default
    if isinstance(default, bool) and option.type is None:
        command.add_argument(option.flag, action=argparse.BooleanOptionalAction, default=default, help=option.help)
        return
    kind = option.type or (type(default) if default is not None else str)
    command.add_argument(option.flag, type=kind, default=default, choices=option.choices, help=option.help)


_INPUT_HELP = {
    "text": "a text; a .txt file (a text per line), .csv/.tsv/.jsonl file (its text column), folder of .txt "
    "files or glob; - for standard input",
    "audio": "an audio file (WAV, FLAC, OGG, MP3, ...; any sample rate, stereo averaged), folder or glob",
    "vision": "an image file (PNG, JPEG, ...), folder or glob",
}
_INFERENCE_EPILOG = """Prints a readable line per input, or with --json one JSON object per line.
Python: data2vec.pipeline(task, model=folder)(inputs) returns the same results."""


class _Parser(argparse.ArgumentParser):
    """argparse with a usage mistake reported as one line, like every other error of the command."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command's parser; ``argv`` (the arguments about to be parsed) names the task
    command, if any, whose own options are added."""
    parser = _Parser(prog="data2vec", description="data2vec models, preprocessing and pretraining")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    commands = parser.add_subparsers(dest="command")

    demo = commands.add_parser("demo", help="run an end-to-end example offline")
    demo.add_argument(
        "modality", nargs="?", default="vision", type=_demo_choice, metavar="{vision,audio,text,fill-mask}",
        help="vision (default; alias image), audio (alias speech), text: data2vec pretraining of a tiny model on "
        "data made offline, then fine-tuning on few labels against the same model from random initialisation "
        "(scikit-learn's digits; words spoken by espeak-ng; Python's docstrings by topic; see "
        "docs/pretraining-results.md); fill-mask: a masked-LM run on Python's help topics",
    )
    demo.add_argument("--out", default=None, help="output folder (default runs/<demo>-demo)")
    demo.add_argument("--steps", type=int, default=None, help="(pre)training steps (default: the demo's own)")
    demo.add_argument("--pretrain-seeds", type=int, default=3, help="pretraining seeds (default 3)")
    demo.add_argument("--finetune-seeds", type=int, default=3, help="fine-tuning seeds per backbone (default 3)")
    demo.add_argument(
        "--workers", type=int, default=None,
        help="processes the runs are spread over (default: one per CPU core, at most 8; 1: one after the other)",
    )
    demo.add_argument("--seed", type=int, default=0, help="fill-mask: the seed")
    demo.add_argument(
        "--versions", action="store_true",
        help="compare data2vec 2.0 with 1.0 on the demo's task instead: fine-tuned accuracy against pretraining time "
        "(output folder runs/<demo>-versions; --steps: 1.0's updates, --steps2: 2.0's)",
    )
    demo.add_argument("--steps2", type=int, default=None, help="--versions: data2vec 2.0's updates (default: the demo's)")
    demo.set_defaults(handler=_demo)

    pretrain = commands.add_parser(
        "pretrain",
        help="data2vec self-supervised pretraining (audio, vision or text)",
        description="Pretrain a backbone with data2vec. Runs on one process, or on several with "
        "`torchrun --nproc_per_node N -m data2vec.cli pretrain ...` (data parallel).",
    )
    pretrain.add_argument(
        "--recipe", required=True,
        help="recipe YAML file, or a name in recipes/ (e.g. vision-tiny, audio-tiny; speech-tiny and image-... work too)",
    )
    pretrain.add_argument(
        "--data", required=True,
        help="audio: folder of wav/flac or a .tsv manifest; vision: image folder or .npy/.pt array; "
        "text: a text file or a folder of .txt files",
    )
    pretrain.add_argument("--out", default=None, help="run folder (default runs/<recipe name>)")
    pretrain.add_argument(
        "--steps", type=int, default=None,
        help="total optimizer updates (overrides the recipe; on --resume a change needs --extend-schedule)",
    )
    pretrain.add_argument(
        "--resume", action="store_true",
        help="continue from the run folder's checkpoint exactly: a recipe that changes more than log_every, "
        "save_every, data.num_workers, device, name or the collapse thresholds stops with an error",
    )
    pretrain.add_argument(
        "--extend-schedule", action="store_true",
        help="with --resume: accept a changed learning-rate or EMA schedule (optim.total_steps, warmup_steps, "
        "schedule, phase_ratio, lr, min_lr, init/final_lr_scale, ema.start/end/anneal_steps); logged in log.jsonl",
    )
    pretrain.add_argument(
        "--allow-recipe-change", action="store_true",
        help="with --resume: accept changes of any other recipe key (seed, model, masking, data, ...): the run no "
        "longer continues the checkpoint's run exactly; logged in log.jsonl",
    )
    pretrain.add_argument(
        "--stop-after", type=int, default=None, metavar="K",
        help="stop (with a checkpoint) after K updates of this invocation; continue later with --resume",
    )
    pretrain.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="overrides the recipe")
    pretrain.add_argument("--no-progress", action="store_true", help="no progress bar")
    pretrain.set_defaults(handler=_pretrain)

    export = commands.add_parser(
        "export-backbone", help="write a pretrained backbone as a Hugging Face model folder"
    )
    export.add_argument("checkpoint", help="checkpoint.pt of `data2vec pretrain`, or its run folder")
    export.add_argument("directory", help="output folder")
    export.add_argument("--teacher", action="store_true", help="export the EMA teacher instead of the student")
    export.set_defaults(handler=_export_backbone)

    export_model = commands.add_parser(
        "export", help="export a model folder for inference elsewhere (ONNX), checked against PyTorch",
        description="Export a model folder to ONNX with dynamic batch and length axes, then run the file in "
        "onnxruntime on a batch of another size and length (one row padded) and print the largest difference "
        "from PyTorch per output. Needs the onnx extra: pip install 'data2vec[onnx]'.",
    )
    export_model.add_argument("--format", choices=["onnx"], default="onnx", help="the file format (default onnx)")
    export_model.add_argument("--model", required=True, help="checkpoint folder (Hugging Face layout) or Hub id")
    export_model.add_argument("--output", required=True, help="the .onnx file to write")
    export_model.add_argument(
        "--task", default=None,
        help="the head to export, by inference command name (e.g. text-classification, speech-recognition), or "
        "feature-extraction for the backbone, multiple-choice (default: the class the folder was saved from)",
    )
    export_model.add_argument("--opset", type=int, default=None, help="ONNX opset version (default: the exporter's)")
    export_model.add_argument(
        "--atol", type=float, default=1e-4,
        help="largest accepted difference between onnxruntime and PyTorch (default 1e-4); beyond it, exit status 1",
    )
    export_model.add_argument("--no-check", action="store_true", help="skip the onnxruntime check")
    export_model.set_defaults(handler=_export)

    finetune = commands.add_parser(
        "finetune", help="fine-tune a checkpoint on a task (every head of the three families)",
        description="Fine-tune a pretrained checkpoint on a task and write a model folder ready for inference.",
        epilog=_FINETUNE_DATA, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, kind, text in _FINETUNE_FLAGS:
        finetune.add_argument(flag, type=kind, default=None, help=text)
    finetune.add_argument("--freeze-feature-encoder", action="store_true", default=None, help="audio: keep the conv feature encoder fixed")
    finetune.add_argument("--resume", action="store_true", help="continue the run in --output exactly where it stopped")
    finetune.add_argument("--no-progress", action="store_true", help="no progress bar")
    finetune.set_defaults(handler=_finetune)
    _add_task_commands(commands, [] if argv is None else argv)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    args = parser.parse_args([arg for arg in argv if arg != "--debug"])
    args.debug = debug
    if not debug:  # a warning is one line for the user, not the source line that raised it
        import warnings

        warnings.formatwarning = lambda message, category, *_: f"warning: {message}\n"
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a user's mistake is one line; --debug shows where it came from
        if args.debug:
            raise
        print(f"error: {_one_line(error)}", file=sys.stderr)
        if not isinstance(error, USER_ERRORS):
            print("(an unexpected error: run again with --debug for the traceback, and report it)", file=sys.stderr)
        return 2 if isinstance(error, USER_ERRORS) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The ``data2vec`` command."""

from __future__ import annotations

import argparse
import sys


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
    if args.modality == "fill-mask":
        from .demos.fill_mask import run

        summary = run(out_dir=args.out or "runs/fill-mask-demo", steps=args.steps or 600, seed=args.seed)
        return 0 if summary["reload_identical"] else 1
    from importlib import import_module

    run = import_module(f".demos.{args.modality}", __package__).run
    run(
        out_dir=args.out or f"runs/{args.modality}-demo",
        pretrain_steps=args.steps,
        pretrain_seeds=args.pretrain_seeds,
        finetune_seeds=args.finetune_seeds,
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
        print(f"log {trainer.log_path}; plot {trainer.plot_path}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="data2vec", description="data2vec models, preprocessing and pretraining")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
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
    demo.add_argument("--seed", type=int, default=0, help="fill-mask: the seed")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

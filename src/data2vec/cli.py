"""The ``data2vec`` command."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    if args.modality == "text":
        from .demos.text import run

        summary = run(out_dir=args.out or "runs/text-demo", steps=args.steps, seed=args.seed)
        return 0 if summary["reload_identical"] else 1
    raise SystemExit(f"unknown demo {args.modality!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="data2vec", description="data2vec models, preprocessing and pretraining")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")

    demo = commands.add_parser("demo", help="run an end-to-end example offline")
    demo.add_argument("modality", nargs="?", default="text", choices=["text"])
    demo.add_argument("--out", default=None, help="output folder (default runs/<modality>-demo)")
    demo.add_argument("--steps", type=int, default=600, help="training steps")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_demo)
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

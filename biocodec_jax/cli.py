"""The ``biocodec-jax`` command: thin subcommands, each calling one library or experiment function.

    biocodec-jax demo [--minutes M] [--steps N] [--output DIR] ...   (see biocodec-jax demo --help)

The experiments (and MNE, matplotlib, ...) are imported inside the command that needs them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def _demo(args: argparse.Namespace, rest: list[str]) -> int:
    """Train and test the EEG codec on the bundled data (experiments/quickstart.py)."""
    from experiments import quickstart

    return quickstart.main(rest, prog="biocodec-jax demo")


def build_parser() -> argparse.ArgumentParser:
    from biocodec_jax import __version__

    parser = argparse.ArgumentParser(prog="biocodec-jax", description="BioCodec, the neural-codec tokenizer for EEG and EMG, in JAX.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The demo's own options are parsed by experiments.quickstart (forwarded unparsed here).
    demo = sub.add_parser(
        "demo", add_help=False, help="train the EEG codec for a few minutes on bundled real EEG and test it on a held-out subject"
    )
    demo.set_defaults(func=_demo, forward=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``biocodec-jax`` console script."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "forward", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.func(args, rest)


if __name__ == "__main__":
    raise SystemExit(main())

"""Command line: ``python -m stylus_ui <command> ...``; ``--help`` on any level lists what exists.

Each subcommand lives in its own module with ``register(subparsers)``. Domain errors become
one readable line on stderr and exit status 2 here, and nowhere else.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from catalog.settings import quiet_environment

COMMAND_MODULES = ("catalog_cmd", "retrieve_cmd", "compose_cmd", "generate_cmd", "serve_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stylus_ui",
        description="Stylus: retrieve, compose and apply LoRA adapters for Stable Diffusion.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"stylus_ui.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"stylus_ui.cli.{name}":
                raise
            continue  # that command's module has not landed (yet)
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    quiet_environment()
    from ground.errors import StylusError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (StylusError, FileNotFoundError, ValueError) as exc:  # StylusError: catalog, settings, method
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; imports resume where they stopped when run again", file=sys.stderr)
        return 130

"""Options every subcommand shares and the settings they produce."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from catalog.settings import Settings


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", metavar="DIR", default=None,
                        help="catalog directory (default: $STYLUS_CATALOG_DIR or ~/.cache/stylus/catalog)")


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Settings:
    return Settings.from_env(catalog_dir=getattr(args, "catalog", None), **overrides)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")

"""Options every subcommand shares and the settings they produce."""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from typing import Any

from catalog.settings import Settings


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", metavar="DIR", default=None,
                        help="catalog directory (default: $STYLUS_CATALOG_DIR or ~/.cache/stylus/catalog)")


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Settings:
    """The settings, their tokens registered for redaction (:func:`redact_output`)."""
    from ground.redact import register_secrets
    settings = Settings.from_env(catalog_dir=getattr(args, "catalog", None), **overrides)
    register_secrets(settings.secrets())
    return settings


def redact_output() -> None:
    """Everything the process prints from here on (stdout, stderr, log lines, tracebacks) passes
    through :func:`ground.redact.redact`, with the tokens and keys of the environment
    registered; a command registers the ones it was given by flag (see :func:`secret_arg`)."""
    from ground.redact import RedactingStream, environment_secrets, install_log_redaction, register_secrets
    register_secrets(environment_secrets())
    install_log_redaction()
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)


def secret_arg(value: str | None) -> str | None:
    """A token or key given on the command line, registered so that no output shows it."""
    from ground.redact import register_secrets
    register_secrets([value] if value else [])
    return value


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


def add_prompt_or_queries(parser: argparse.ArgumentParser) -> None:
    """A PROMPT, or ``--queries FILE`` (read by :func:`read_queries`)."""
    parser.add_argument("prompt", nargs="?", help="the prompt (or use --queries)")
    parser.add_argument("--queries", metavar="FILE.jsonl",
                        help="lines with a 'query' field; writes one JSON line per query, in input order")


def read_queries(path: str) -> list[str]:
    """The ``query`` field of every line of a JSONL file (optionally gzipped), in order."""
    queries = []
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: line {n} is not JSON: {exc.msg}") from None
            if not isinstance(row, dict) or not isinstance(row.get("query"), str):
                raise ValueError(f"{path}:{n}: line {n} has no text field 'query' (expected a JSON object with one)")
            queries.append(row["query"])
    return queries

"""Commands that read the workflow config without running anything."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from .dsconfig import write_named_configs
from .matrix import build_plan, deep_merge, matrix_table


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    if command == "matrix":
        parser.add_argument("--configfile", type=Path, action="append", default=None,
                            help="config file(s), later ones override earlier (default: workflow_config.yaml)")


def load_config(paths: list[Path]) -> dict:
    config: dict = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            config = deep_merge(config, yaml.safe_load(handle) or {})
    return config


def run(args: argparse.Namespace) -> int:
    if args.command == "ds-configs":
        for path in write_named_configs():
            print(path)
        return 0
    config = load_config(args.configfile or [Path("workflow_config.yaml")])
    print(matrix_table(build_plan(config)))
    return 0

"""`python -m zerosweep ds-configs`: regenerate the workshop's named DeepSpeed configs in ds_configs/.

(The run matrix is printed by `snakemake matrix`, which validates the config against the schema first.)
"""

from __future__ import annotations

import argparse

from .dsconfig import write_named_configs


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    for path in write_named_configs():
        print(path)
    return 0

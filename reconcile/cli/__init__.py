"""The `reconcile` command: the only package that prints or chooses an exit code.

`app` holds the command group and what the commands share; each other module adds commands.
"""

from reconcile.cli import importing, planning, refreshing, serving
from reconcile.cli.app import EXIT_CODES, cli, collect_less, main

__all__ = [
    "EXIT_CODES",
    "cli",
    "collect_less",
    "importing",
    "main",
    "planning",
    "refreshing",
    "serving",
]

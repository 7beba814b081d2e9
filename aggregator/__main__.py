"""`python -m aggregator` is the `aggregator` command."""

from aggregator.cli import entry

entry()

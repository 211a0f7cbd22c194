"""``python -m mailferry``: the same as the ``mailferry`` command."""

from mailferry.cli.main import entry

entry()

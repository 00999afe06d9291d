"""``python -m regen.cli``: the same as the ``regen`` command."""

from regen.cli._app import main

main()

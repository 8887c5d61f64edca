"""``python -m segbench`` is the same as the ``segbench`` command."""

from segbench.cli import main

main()

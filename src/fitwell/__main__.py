"""``python -m fitwell ...``: the same command line as ``fitwell ...`` (torchrun and other
launchers start a module, not a console script)."""

from fitwell.cli import main

main()

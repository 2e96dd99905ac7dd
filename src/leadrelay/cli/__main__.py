"""``python -m leadrelay.cli``: the ``leadrelay`` command without its console script."""

from . import main

main(prog_name="leadrelay")

"""``python -m trioecho``: the same as the ``trioecho`` command."""

from trioecho._cli import main

main()

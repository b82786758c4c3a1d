"""``python -m coadv`` is the ``coadv`` command."""

from coadv.cli import main

main()

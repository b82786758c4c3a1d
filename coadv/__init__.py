"""coadv: networks that learn together or against each other, on PyTorch Lightning.

The ``coadv`` command (also ``python -m coadv``) wraps LightningCLI (``fit`` / ``validate`` / ``test`` / ``predict``)
and the project's tools (``study``, ``sweep``, ``compare-attacks``, ``demo``, ``corpus``) as subcommands.
"""

__version__ = "0.2.0"

from coadv import sources as _sources  # noqa: E402,F401  (snapshot of the attack sources before any is imported)

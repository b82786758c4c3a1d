"""The translation study: {CycleGAN, CR-CycleGAN, ACCR} x domain pairs x seeds (x ablation variants) -> tables.

``main`` (``coadv study`` and its validation search), ``cells`` (one ``coadv fit`` per cell, the pair's reference
rows, workers), ``evaluation`` (classifiers, judges, metrics), ``tables`` / ``stability`` (the tables),
``figures``, ``report`` (``results.md``, ``cells.csv``).
"""

"""The attack comparison: every attack against a victim, side by side, and the claims it decides.

``main`` (``coadv compare-attacks``), ``jobs`` (one ``coadv test`` run and its reuse record), ``budgets`` (equal
gradient budgets, stopping rules, comparison rows), ``tables`` (tables and curves), ``stats`` (paired statistics and
the decision rule), ``claims`` (the claims and ``claims.md``), ``tuning`` (``coadv tune-attacks``).
"""

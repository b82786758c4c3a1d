"""What ``coadv compare-attacks`` runs: each attack's gradient-evaluation budget, its stopping rule, and the
rows derived from an attack config ("+bs": followed by a boundary search; "+min": no early stop).

Budget B = gradient evaluations per trial, a cap (each attack's class docstring says which argument sets it):

| attack                | CLI flags (under ``--model.init_args.attack.init_args.``) | why                          |
|-----------------------|------------------------------------------------------------|------------------------------|
| fgsm, mfcc_ivec       | none: fixed at 1                                           | one step; run once, at B = 1 |
| bim, pgd_linf, pgd_l2 | ``steps=B``                                                | one evaluation per step      |
| cw                    | ``max_grad_evals=B steps=B``                               | B spread over the config's binary-search rounds (search_steps x Adam steps = B); ``steps=B`` lifts the per-round cap |
| gauss_newton          | ``steps=B max_grad_evals=B``                               | ``steps + 1`` otherwise      |
| qn_lbfgs, qn_bfgs     | ``max_grad_evals=B``                                       | warm start included          |
| ssr, ssr_lin          | ``steps=B max_grad_evals=B``                               | ``steps + 1`` otherwise      |
| ddn, fmn              | ``steps=B``                                                | no early stop: exactly B     |

"+bs" rows (``attacks.BoundarySearch`` around the attack, from a YAML fragment written into the run folder and
passed as a second ``-c``) set the same flags on the inner attack (``...attack.init_args.attack.init_args.``); the
bisection adds ``BOUNDARY_STEPS`` forward evaluations per flipped trial, not counted in B (no gradient).
"""

from __future__ import annotations

import importlib
import inspect
import json
from dataclasses import dataclass, field

import yaml

from coadv.compare import configs
from coadv.constants import ATTACKS, CONFIGS

FIXED_COST = {"fgsm": 1, "mfcc_ivec": 1}  # gradient evaluations per trial, whatever the budget
BUDGET_ARGS: dict[str, tuple[str, ...]] = {  # attack -> the init args set to B
    "bim": ("steps",),
    "pgd_linf": ("steps",),
    "pgd_l2": ("steps",),
    "cw": ("max_grad_evals", "steps"),
    "gauss_newton": ("steps", "max_grad_evals"),
    "qn_lbfgs": ("max_grad_evals",),
    "qn_bfgs": ("max_grad_evals",),
    "ssr": ("steps", "max_grad_evals"),
    "ssr_lin": ("steps", "max_grad_evals"),
    "ddn": ("steps",),
    "fmn": ("steps",),
}
BOUNDARY_SEARCH = ("fgsm", "bim", "pgd_linf", "pgd_l2", "cw")  # fixed-budget attacks that get a "+bs" row
NO_EARLY_STOP = ("gauss_newton",)  # attacks that get a "+min" row: early_stop=false, smallest success kept
BOUNDARY_STEPS = 10
PREFIX = "--model.init_args.attack.init_args."
INNER = "attack.init_args."  # a "+bs" row's inner attack
# class name -> (keeps minimising after the first flip, how it stops); PGD / Gauss-Newton depend on early_stop
STOPPING = {
    "FGSM": (False, "one step of size ε"),
    "MFCCIvec": (False, "one feature-domain step of size ε"),
    "CarliniWagnerL2": (True, "all steps; smallest success over the c search"),
    "QuasiNewton": (True, "smallest success seen; stops after the penalty level that flipped"),
    "StepSizeRegularized": (True, "keeps shrinking ‖δ‖ after the flip (tol, ρ_min or budget)"),
    "DDN": (True, "all steps; smallest success kept"),
    "FMN": (True, "all steps; smallest success kept"),
}


@dataclass(frozen=True)
class Variant:
    """One row of the comparison: attack ``base`` (``coadv.compare.configs``), maybe wrapped in a boundary search,
    with ``fixed`` init-arg overrides that define the row (e.g. ``early_stop: False``)."""

    name: str
    base: str
    boundary_search: bool = False
    fixed: dict = field(default_factory=dict)

    @property
    def fixed_cost(self) -> int | None:
        """Gradient evaluations per trial when the attack has no budget argument (FGSM, MFCC-ivec), else None."""
        return FIXED_COST.get(self.base)


def variant_names() -> list[str]:
    """Every valid row name, each attack followed by its derived rows."""
    names = []
    for base in ATTACKS:
        names += [base] + [base + "+bs"] * (base in BOUNDARY_SEARCH) + [base + "+min"] * (base in NO_EARLY_STOP)
    return names


def variant(name: str) -> Variant:
    """The row called ``name`` (``pgd_l2``, ``pgd_l2+bs``, ``gauss_newton+min``); unknown names raise
    ``SystemExit`` listing the valid ones."""
    if name not in variant_names():
        raise SystemExit(f"unknown attack {name!r}; valid: {', '.join(variant_names())}")
    base, _, suffix = name.partition("+")
    return Variant(name, base, suffix == "bs", {"early_stop": False} if suffix == "min" else {})


def attack_block(base: str, victim: str) -> dict:
    """``model.init_args.attack`` of attack ``base`` against ``victim`` (``class_path`` + ``init_args``)."""
    try:
        block = configs.merged(base, victim)["model"]["init_args"]["attack"]
        block["class_path"]  # noqa: B018  (must be there)
    except (KeyError, TypeError) as error:
        raise SystemExit(f"{base} against {victim}: no model.init_args.attack.class_path ({error!r} missing)") from None
    return block


def attack_class(class_path: str) -> type:
    """The class a ``class_path`` names (``attacks.PGD``)."""
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module or "attacks"), name)


def budget_overrides(base: str, budget: int) -> dict[str, int]:
    """Init args that cap ``base`` at ``budget`` gradient evaluations per trial; ``{}`` for fixed-cost attacks."""
    if base in FIXED_COST:
        return {}
    if budget < 1:
        raise SystemExit(f"budget {budget}: expected a positive number of gradient evaluations")
    return dict.fromkeys(BUDGET_ARGS[base], budget)


def overrides(row: Variant, budget: int | None) -> dict:
    """The init args a run of ``row`` sets (its own plus the budget's; ``budget=None``: the default settings)."""
    return {**row.fixed, **(budget_overrides(row.base, budget) if budget is not None else {})}


def budget_flags(row: Variant, budget: int | None, feature: bool = False) -> list[str]:
    """CLI flags that make a ``coadv test`` of ``row`` spend ``budget`` (None: the config's own settings); with
    ``feature`` the attack sits inside ``attacks.FeatureDomain`` (one level deeper)."""
    feature = feature and row.base != "mfcc_ivec"
    prefix = PREFIX + INNER * (int(row.boundary_search) + int(feature))
    return [f"{prefix}{key}={json.dumps(value)}" for key, value in overrides(row, budget).items()]


# rows that run in the feature domain (`--domain feature`): those tuned there (`coadv.compare.tuning.FEATURE_GRID`);
# FGSM there is MFCC-ivec
FEATURE_ROWS = ("gauss_newton", "qn_lbfgs", "ssr", "ddn", "fmn", "bim", "pgd_l2", "mfcc_ivec")
FEATURE_UNITS = CONFIGS / "attack" / "feature"  # per-attack overrides of waveform-unit arguments (e.g. BIM's ε)


def wrapped_fragment(base: str, victim: str, boundary_search: bool, feature: bool) -> str | None:
    """A config fragment, passed after the run's configs, that wraps its attack in ``attacks.BoundarySearch`` and / or runs
    it in the victim's feature domain: ``attacks.FeatureDomain`` around a waveform attack (MFCC-ivec works on the
    features itself), with the attack's feature-unit values from ``configs/attack/feature/<attack>.yaml`` when that
    file exists; None when nothing changes."""
    block = attack_block(base, victim)
    units = FEATURE_UNITS / f"{base}.yaml"
    tuned = feature and units.is_file()
    if tuned:
        block = {**block, "init_args": {**(block.get("init_args") or {}), **yaml.safe_load(units.read_text())}}
    wrap = feature and attack_class(block["class_path"]).domain == "waveform"
    if boundary_search:
        block = {"class_path": "attacks.BoundarySearch", "init_args": {"attack": block, "steps": BOUNDARY_STEPS}}
    if wrap:
        block = {"class_path": "attacks.FeatureDomain", "init_args": {"attack": block}}
    if not (boundary_search or wrap or tuned):
        return None
    return yaml.safe_dump({"model": {"init_args": {"attack": block}}}, sort_keys=False)


def boundary_fragment(base: str, victim: str) -> str:
    """A config fragment that wraps attack ``base`` in ``attacks.BoundarySearch`` (passed after its configs)."""
    return wrapped_fragment(base, victim, boundary_search=True, feature=False)


def effective_args(victim: str, row: Variant, budget: int | None) -> tuple[type, dict]:
    """The (inner) attack class of a run and its arguments: class defaults, then the configs', then the run's."""
    block = attack_block(row.base, victim)
    cls = attack_class(block["class_path"])
    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items() if p.default is not p.empty}
    return cls, {**defaults, **(block.get("init_args") or {}), **overrides(row, budget)}


def stopping_rule(victim: str, row: Variant, budget: int | None = None) -> tuple[bool, str]:
    """(keeps minimising after the first flip, how the run stops), from its effective arguments."""
    cls, args = effective_args(victim, row, budget)
    name = cls.__name__
    if name in ("PGD", "GaussNewton"):
        ball = " inside the ε ball" if name == "PGD" else ""
        minimises = name == "GaussNewton" and not args["early_stop"]
        rule = (
            minimises,
            f"first success{ball}"
            if args["early_stop"]
            else "all steps; " + ("smallest success kept" if minimises else "last iterate"),
        )
    elif name in STOPPING:
        rule = STOPPING[name]
    else:
        raise SystemExit(f"{row.base}: no stopping rule known for {name}; add it to coadv.compare.budgets.STOPPING")
    if row.boundary_search:
        return True, f"{rule[1]}, then {BOUNDARY_STEPS} bisections of the scale"
    return rule

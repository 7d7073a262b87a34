"""Contract suites for every registry a user extends, shipped with the package (Optuna's ``optuna/testing`` pattern).

A sampler, a step kind, a backbone, a hook technique, a strategy, a feature network or an integration is one new
module that registers itself; the suites here iterate the registries, so the new entry is tested by being imported.
An entry that needs something to run on (a backbone's tiny models, an integration's tiny object, the backbones a hook
technique is for) declares it in the same module with :func:`fixture_for`; the built-in entries' fixtures are in
:mod:`flexdiff.testing.tiny`.

In a plugin's own tests::

    import flexdiff.testing as ft
    import my_sampler                       # registers "my-sampler"

    def test_my_sampler_keeps_the_contract():
        ft.run_contract("sampler", "my-sampler")   # raises AssertionError naming the check that failed

flexdiff's own ``tests/test_contracts.py`` parametrises :func:`contract_cases` over every registered entry.
"""

from __future__ import annotations

from flexdiff.testing._suites import SUITES, Suite, fixture, fixture_for, register_suite
from flexdiff.utils.registry import import_submodules


def _load() -> None:
    """Import every public module here: each suite module registers its suite (a new suite is a new module), and
    :mod:`.tiny` the built-in entries' fixtures. Lazy: ``import flexdiff.testing`` alone builds nothing."""
    import_submodules(__name__, __path__)


def contract_cases() -> list[tuple[str, str, str]]:
    """(suite label, entry name, check name) for every registered entry of every suite: what pytest parametrises."""
    _load()
    return [(label, name, check.__name__) for label, suite in SUITES.items() for name in suite.registry.names() for check in suite.checks]


def run_contract(label: str, name: str, check: str | None = None) -> None:
    """Run suite ``label``'s checks (or the one named ``check``) on the registered entry ``name``."""
    _load()
    suite = SUITES[label]
    suite.registry.get(name)  # an unknown name: the registry's one-line error
    for fn in suite.checks:
        if check is None or fn.__name__ == check:
            fn(name)


__all__ = ["SUITES", "Suite", "contract_cases", "fixture", "fixture_for", "register_suite", "run_contract"]

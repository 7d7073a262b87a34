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

import importlib
from collections.abc import Callable
from typing import Any

from flexdiff.testing._suites import SUITES, Suite, fixture, fixture_for, register_suite

#: the suite modules; each registers one :class:`Suite` on import
_SUITE_MODULES = ("samplers", "step_kinds", "backbones", "techniques", "strategies", "features", "integrations")


def _load() -> None:
    importlib.import_module("flexdiff.testing.tiny")  # the built-in entries' fixtures
    for name in _SUITE_MODULES:
        importlib.import_module(f"flexdiff.testing.{name}")


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


def checks_of(label: str) -> list[Callable[[str], Any]]:
    _load()
    return list(SUITES[label].checks)


__all__ = ["SUITES", "Suite", "checks_of", "contract_cases", "fixture", "fixture_for", "register_suite", "run_contract"]

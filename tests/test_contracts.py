"""Every registered entry of every registry keeps its contract (flexdiff.testing): a new entry is tested by existing."""

from __future__ import annotations

import pytest

from flexdiff.testing import contract_cases, run_contract


@pytest.mark.parametrize("label, name, check", contract_cases(), ids=lambda v: str(v).replace(" ", "-"))
def test_contract(label: str, name: str, check: str) -> None:
    run_contract(label, name, check)

"""A saved student is a model folder: it reloads bit-identically and keeps the teacher's noise schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flexdiff.errors import FlexdiffError
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, load_model
from flexdiff.models.student import STUDENT_FILE, block_module, block_specs
from flexdiff.nas.phases import assemble
from flexdiff.nas.space import random_architecture
from flexdiff.nas.student import save_student
from flexdiff.nas.supernet import BlockSupernet
from flexdiff.testing.tiny import tiny_unet


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_saved_student_reloads_bit_identically(tmp_path: Path, seed: int) -> None:
    teacher = tiny_unet()
    specs = block_specs(teacher)
    supernets = {s.name: BlockSupernet(block_module(teacher, s), s) for s in specs}
    with torch.no_grad():
        for net in supernets.values():
            for p in net.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
    arch = random_architecture(specs, torch.Generator().manual_seed(seed))
    student = assemble(teacher, specs, supernets, arch)
    save_student(student, arch, tmp_path / "student", DEFAULT_SCHEDULER_CONFIG)
    loaded = load_model(tmp_path / "student", "cpu")
    assert not (tmp_path / "student.partial").exists()
    assert not list((tmp_path / "student").rglob("*.bin")) and not list((tmp_path / "student").rglob("*.pt"))
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    for t in (0, 321, 999):
        with torch.no_grad():
            assert torch.equal(loaded.eps(x, t), student(x, torch.full((5,), t)).sample)
    assert loaded.num_parameters == sum(p.numel() for p in student.parameters())
    assert loaded.scheduler_config == DEFAULT_SCHEDULER_CONFIG


def test_corrupt_description_is_a_one_line_error(tmp_path: Path) -> None:
    teacher = tiny_unet()
    specs = block_specs(teacher)
    supernets = {s.name: BlockSupernet(block_module(teacher, s), s) for s in specs}
    arch = random_architecture(specs, torch.Generator().manual_seed(0))
    save_student(assemble(teacher, specs, supernets, arch), arch, tmp_path / "s", DEFAULT_SCHEDULER_CONFIG)
    path = tmp_path / "s" / "unet" / STUDENT_FILE
    data = json.loads(path.read_text())
    data["blocks"] = data["blocks"][:-1]
    path.write_text(json.dumps(data))
    with pytest.raises(FlexdiffError, match="one entry per block"):
        load_model(tmp_path / "s", "cpu")

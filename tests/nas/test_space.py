"""The search space: every combination of block choices assembles into a valid, runnable, hookable UNet whose MACs
and parameters are the per-block sums; the candidate units reproduce diffusers' layers exactly at full width."""

from __future__ import annotations

import copy

import pytest
import torch

from flexdiff.backbones import unet_layout
from flexdiff.hooks import apply_partial_steps, remove_partial_steps
from flexdiff.models.student import (
    Architecture,
    BlockChoice,
    SlimResnet,
    apply_architecture,
    block_module,
    block_specs,
    num_parameters,
)
from flexdiff.nas.blocks import block_inputs, capture, run_block
from flexdiff.nas.phases import assemble
from flexdiff.nas.space import random_architecture
from flexdiff.nas.supernet import BlockSupernet, unit_costs
from flexdiff.nas.units import SlimmableResnet
from flexdiff.running.cost import count_macs
from flexdiff.testing.tiny import tiny_unet


def _supernets(unet):
    specs = block_specs(unet)
    return specs, {s.name: BlockSupernet(block_module(unet, s), s) for s in specs}


def _perturb(supernets, seed: int) -> None:
    """Trained-looking weights: the shared weights moved away from the teacher's."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for net in supernets.values():
            for p in net.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))


@pytest.fixture(scope="module")
def setup():
    teacher = tiny_unet()
    specs, supernets = _supernets(teacher)
    _perturb(supernets, 0)
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), capture(teacher, specs) as data:
        teacher(x, torch.tensor([500]))
        example = dict(data)
    costs = {s.name: unit_costs(supernets[s.name], block_module(teacher, s), block_inputs(teacher, s, example)) for s in specs}
    teacher_macs = count_macs(lambda: teacher(x, torch.tensor([500])))
    return teacher, specs, supernets, costs, teacher_macs


@pytest.mark.parametrize("seed", range(24))
def test_random_combination_assembles_runs_and_costs_add_up(setup, seed: int) -> None:
    teacher, specs, supernets, costs, teacher_macs = setup
    arch = random_architecture(specs, torch.Generator().manual_seed(seed))
    student = assemble(teacher, specs, supernets, arch)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    t = torch.tensor([10, 500, 990])
    with torch.no_grad():
        out = student(x, t).sample
    assert out.shape == x.shape and torch.isfinite(out).all()
    # cost model: stem + the chosen blocks' costs, exactly as counted on the assembled network
    stem_macs = teacher_macs - sum(c.full_macs for c in costs.values())
    stem_params = num_parameters(teacher) - sum(c.full_params for c in costs.values())
    macs = count_macs(lambda: student(x[:1], t[:1]))
    assert macs == stem_macs + sum(costs[s.name].macs(arch[s.name], s) for s in specs)
    assert num_parameters(student) == stem_params + sum(costs[s.name].params(arch[s.name], s) for s in specs)
    # the student's architecture rebuilt from its description on a fresh skeleton takes its weights strictly
    skeleton = type(teacher).from_config(teacher.config)
    apply_architecture(skeleton, arch.to_json())
    skeleton.load_state_dict(student.state_dict(), strict=True)
    # partial-step hooks (DeepCache) see the same units and branches as on the teacher
    assert unet_layout(student).num_branches == unet_layout(teacher).num_branches
    apply_partial_steps(student)
    remove_partial_steps(student)


@pytest.mark.parametrize("seed", range(6))
def test_supernet_candidate_equals_extracted_block(setup, seed: int) -> None:
    teacher, specs, supernets, _, _ = setup
    arch = random_architecture(specs, torch.Generator().manual_seed(100 + seed))
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad(), capture(teacher, specs) as data:
        teacher(x, torch.tensor([3, 700]))
        data = dict(data)
    for spec in specs:
        net = supernets[spec.name]
        net.configure(arch[spec.name])
        with torch.no_grad():
            shared = net(*block_inputs(teacher, spec, data))
            extracted = run_block(net.extract(arch[spec.name], block_module(teacher, spec)), spec, *block_inputs(teacher, spec, data))
        net.configure(spec.full())
        for a, b in zip(shared, extracted):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_full_architecture_is_the_teacher() -> None:
    teacher = tiny_unet()
    specs, supernets = _supernets(teacher)  # untouched supernets: the teacher's weights, internal groups reordered
    student = assemble(teacher, specs, supernets, Architecture.full(specs))
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([1, 250, 600, 999])
    with torch.no_grad():
        torch.testing.assert_close(student(x, t).sample, teacher(x, t).sample, rtol=1e-5, atol=1e-5)


def test_slim_units_match_diffusers_at_full_width() -> None:
    from diffusers.models.resnet import ResnetBlock2D

    torch.manual_seed(0)
    resnet = ResnetBlock2D(in_channels=8, out_channels=16, temb_channels=12, groups=4, eps=1e-5).eval()
    x, temb = torch.randn(2, 8, 5, 5), torch.randn(2, 12)
    slim = SlimResnet.like(resnet, 4)
    slim.load_state_dict(resnet.state_dict())
    slimmable = SlimmableResnet(resnet)
    with torch.no_grad():
        ref = resnet(x, temb)
        torch.testing.assert_close(slim(x, temb), ref)
        torch.testing.assert_close(slimmable(x, temb), ref, rtol=1e-5, atol=1e-5)  # reordered groups: same function
        slimmable.active = 2
        torch.testing.assert_close(slimmable.extract(2)(x, temb), slimmable(x, temb), rtol=1e-5, atol=1e-5)
        slimmable.active = 0
        dropped = slimmable.extract(0)
        torch.testing.assert_close(dropped(x, temb), resnet.conv_shortcut(x))  # residual branch dropped: the shortcut
        assert dropped.mid_channels == 0


def test_choices_cover_widths_and_attention() -> None:
    specs = block_specs(tiny_unet())
    for spec in specs:
        choices = spec.choices()
        assert len(set(choices)) == len(choices)
        assert spec.full() in choices
        assert all(len(c.widths) == len(spec.groups) for c in choices)
        assert {c.attention for c in choices} == ({True, False} if spec.has_attention else {False})
        assert BlockChoice(tuple(0 for _ in spec.groups), False) in choices  # the smallest: every residual branch dropped
    assert [s.name for s in specs] == ["down0", "down1", "mid", "up0", "up1"]


def test_incompatible_models_are_one_line_errors() -> None:
    from diffusers import UNet2DConditionModel

    from flexdiff.errors import FlexdiffError

    torch.manual_seed(0)
    cond = UNet2DConditionModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=2,
        cross_attention_dim=8,
        attention_head_dim=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )
    with pytest.raises(FlexdiffError, match="UNet2DModel"):
        block_specs(cond)
    bad = copy.deepcopy(tiny_unet())
    with pytest.raises(FlexdiffError, match="flexdiff-student"):
        apply_architecture(bad, {"format": "other"})

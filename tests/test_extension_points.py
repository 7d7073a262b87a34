"""Adding a sampler, a step kind, a backbone, a hook technique, a feature network, a strategy or an integration is
adding one file.

Each test writes a toy entry as a module of its own (in a temporary folder, as it would be a new file in the package),
with the fixture its contract suite needs declared in the same file (``flexdiff.testing.fixture_for``), imports it,
runs it through the rest of flexdiff with no other change, and sees every contract suite of ``flexdiff.testing`` pick
it up and pass; then takes it off the registry again. docs/architecture.md quotes the file counts these tests measure.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from flexdiff.backbones import BACKBONES
from flexdiff.integrations import INTEGRATIONS
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, DiffusionModel
from flexdiff.noise import NoiseSchedule
from flexdiff.running.cost import measure_macs
from flexdiff.samplers import SAMPLERS
from flexdiff.schedule import STEP_KINDS
from flexdiff.search.strategies import STRATEGIES
from flexdiff.testing import contract_cases, run_contract


def suites_on(name: str) -> set[str]:
    """The contract suites that list ``name`` among their entries."""
    return {label for label, entry, _ in contract_cases() if entry == name}


@pytest.fixture()
def plugin(tmp_path: Path) -> Iterator:
    """``plugin(name, source)``: write ``source`` to ``name.py`` (the one new file) and import it."""
    loaded: list[str] = []

    def load(name: str, source: str) -> ModuleType:
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        loaded.append(name)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


def files_touched(tmp_path: Path) -> int:
    return len(list(tmp_path.glob("*.py")))


TOY_SAMPLER = '''
    """DDIM written through x0-hat, eta = 0, no clipping: a second implementation of the same first-order step."""
    from flexdiff.errors import FlexdiffError
    from flexdiff.samplers import check_timesteps, register_sampler


    @register_sampler("toy-x0", spacing="leading", deterministic=True)
    def toy_x0(x, timesteps, noise, *, eta=0.0, generator=None, grid=None, noise_sampler=None):
        if eta:  # deterministic: the contract suite checks that eta is refused, not ignored
            raise FlexdiffError(eta, "eta = 0 for toy-x0", "drop --eta")
        ts = check_timesteps(timesteps, noise.num_train_timesteps)
        for i, t in enumerate(ts):
            eps = yield x, t, i
            a, a_prev = noise.alpha_bar(t), noise.alpha_bar(ts[i + 1] if i + 1 < len(ts) else None)
            x0 = (x - (1 - a) ** 0.5 * eps) / a ** 0.5
            x = a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps
        return x
'''


def test_a_sampler_is_one_file(plugin, tmp_path: Path, tiny_model_dir: Path) -> None:
    from typer.testing import CliRunner

    import flexdiff
    from flexdiff.cli import app

    plugin("toy_sampler", TOY_SAMPLER)
    try:
        model = flexdiff.load_model(tiny_model_dir, "cpu")
        model.noise = NoiseSchedule.from_scheduler_config({**DEFAULT_SCHEDULER_CONFIG, "clip_sample": False})  # DDIM clips, the toy does not
        ts = flexdiff.teacher_timesteps(model, "toy-x0", 6)
        plan = flexdiff.ddim_k(ts, 3, "toy-x0")  # schedules validate their sampler against the registry
        ours = flexdiff.sample(model, 4, seed=0, schedule=plan)
        ddim = flexdiff.sample(model, 4, seed=0, schedule=flexdiff.ddim_k(ts, 3, "ddim"))
        torch.testing.assert_close(ours, ddim, rtol=0, atol=1e-5)
        result = CliRunner().invoke(
            app, ["sample", "--model", str(tiny_model_dir), "--sampler", "toy-x0", "--steps", "4", "--n", "2", "--out", str(tmp_path / "o")]
        )
        assert result.exit_code == 0, result.output
        assert suites_on("toy-x0") == {"sampler"}
        run_contract("sampler", "toy-x0")
        assert files_touched(tmp_path) == 1
    finally:
        SAMPLERS.unregister("toy-x0")


TOY_STEP_KIND = '''
    """A step that computes every unit but records nothing (a later partial step replays the older cache)."""
    from flexdiff.schedule import StepKind, register_step_kind

    RECOMPUTE = register_step_kind(StepKind("recompute", calls_network=True, takes_branch=False, fills_cache=False))
'''


def test_a_step_kind_is_one_file(plugin, tmp_path: Path, tiny_model) -> None:
    import flexdiff
    from flexdiff.schedule import Schedule, Step

    plugin("toy_step_kind", TOY_STEP_KIND)
    try:
        ts = flexdiff.teacher_timesteps(tiny_model, "ddim", 6)
        data = {
            "format": "flexdiff.schedule",
            "version": 1,
            "T": 6,
            "timesteps": ts,
            "sampler": "ddim",
            "steps": ["full", "recompute", "partial:0", "recompute", "null", "recompute"],
        }
        plan = Schedule.from_dict(data)  # parsed and validated like any schedule file
        assert plan.counts()["recompute"] == 3 and plan.active_indices == [0, 1, 2, 3, 5]
        costs = measure_macs(tiny_model)
        assert costs.schedule(plan) == 4 * costs.full + costs.partial[0]
        all_recompute = Schedule(tuple([Step("full")] + [Step("recompute")] * 5), tuple(ts), "ddim")
        noise = tiny_model.initial_noise(3, 0)
        with flexdiff.apply_schedule(tiny_model, all_recompute) as run:  # recompute = full without recording
            got = flexdiff.generate(tiny_model, noise, all_recompute.active_timesteps, "ddim", denoise=run.start)
        torch.testing.assert_close(got, flexdiff.generate(tiny_model, noise, ts, "ddim"), rtol=0, atol=0)
        flexdiff.sample(tiny_model, 3, seed=0, schedule=plan)  # a replay after a recompute uses the full step's cache
        assert suites_on("recompute") == {"step kind"}
        run_contract("step kind", "recompute")  # on every backbone's tiny models, counted and drawn by the report
        assert files_touched(tmp_path) == 1
    finally:
        STEP_KINDS.unregister("recompute")


TOY_BACKBONE = '''
    """A toy family: a stack of residual conv blocks; partial steps replay the middle blocks' outputs."""
    import torch
    from torch import nn

    from flexdiff.backbones import Backbone, Branch, Layout, register_backbone
    from flexdiff.models import DEFAULT_SCHEDULER_CONFIG, DiffusionModel
    from flexdiff.noise import NoiseSchedule
    from flexdiff.testing import fixture_for


    class ToyNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.inp, self.out = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 1, 3, padding=1)
            self.time = nn.Linear(1, 4)
            self.blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1)) for _ in range(4))  # units

        def forward(self, x, t):
            h = self.inp(x) + self.time(t.float()[:, None] / 1000)[:, :, None, None]
            for block in self.blocks:
                h = h + torch.tanh(block(h))  # (N, 4, H, W)
            return self.out(h)


    class ToyBackbone(Backbone):
        name, description = "toy", "a ToyNet"

        def matches(self, module):
            return isinstance(module, ToyNet)

        def layout(self, module):
            units = tuple((f"block{i}", b) for i, b in enumerate(module.blocks))
            return Layout(units, (Branch(0, "blocks1-3", range(1, 4), frozenset()), Branch(1, "block2", range(2, 3), frozenset())))

        def call(self, module, x, t, **conditioning):
            return module(x, t)


    register_backbone(ToyBackbone())
    BUILT = []


    @fixture_for("backbone", "toy")
    def tiny_models():
        """The contract suites' tiny model of the family (counted, so the test sees every suite use it)."""
        def factory():
            BUILT.append(1)
            return DiffusionModel(ToyNet().eval().requires_grad_(False), NoiseSchedule.from_scheduler_config(DEFAULT_SCHEDULER_CONFIG), (1, 8, 8), "toy")
        return [factory]
'''


def test_a_backbone_is_one_file_and_its_tiny_model(plugin, tmp_path: Path) -> None:
    import flexdiff

    toy = plugin("toy_backbone", TOY_BACKBONE)
    try:
        model = DiffusionModel(toy.ToyNet().eval().requires_grad_(False), NoiseSchedule.from_scheduler_config(DEFAULT_SCHEDULER_CONFIG), (1, 8, 8), "toy")
        assert model.backbone.name == "toy"
        costs = measure_macs(model)
        assert costs.partial[0] < costs.partial[1] < costs.full  # branch 0 replays the most
        ts = flexdiff.teacher_timesteps(model, "ddim", 6)
        noise = model.initial_noise(2, 0)
        plain = flexdiff.generate(model, noise, ts, "ddim")
        assert torch.equal(flexdiff.sample(model, 2, seed=0, schedule=flexdiff.full(ts)), plain.clamp(-1, 1))
        calls = []
        handle = model.denoiser.blocks[2][0].register_forward_pre_hook(lambda *a: calls.append(1))  # inside the unit: skipped when it replays
        try:
            cached = flexdiff.sample(model, 2, seed=0, schedule=flexdiff.deepcache_uniform(ts, 3, 0))
        finally:
            handle.remove()
        assert len(calls) == 2 and not torch.equal(cached, plain.clamp(-1, 1))  # block2 runs in the two full steps only
        assert torch.equal(flexdiff.generate(model, noise, ts, "ddim"), plain)  # the hooks came off
        assert suites_on("toy") == {"backbone"}
        run_contract("backbone", "toy")
        built = len(toy.BUILT)
        run_contract("hook technique", "output")  # the technique it reuses with, and every step kind, run on it too
        run_contract("step kind", "partial", "runs_on_every_backbone_as_its_properties_say")
        assert len(toy.BUILT) >= built + 2
        assert files_touched(tmp_path) == 1
    finally:
        BACKBONES.unregister("toy")


TOY_TECHNIQUE = '''
    """DeepCache's replay under a hook name of its own, for UNets (declared: no backbone reuses with it by default)."""
    from flexdiff.hooks import PartialStepHook, Technique, register_technique
    from flexdiff.testing import fixture_for

    register_technique(Technique("toy-replay", "toy_replay", lambda index, state, layout: PartialStepHook(index, state)))
    fixture_for("technique", "toy-replay")(lambda: ["unet"])
'''


def test_a_hook_technique_is_one_file(plugin, tmp_path: Path) -> None:
    from flexdiff.hooks import TECHNIQUES

    plugin("toy_technique", TOY_TECHNIQUE)
    try:
        assert suites_on("toy-replay") == {"hook technique"}
        run_contract("hook technique", "toy-replay")  # hooks on every unit of each tiny UNet, replays exact, off by name
        assert files_touched(tmp_path) == 1
    finally:
        TECHNIQUES.unregister("toy-replay")


TOY_FEATURES = '''
    """Per-channel mean and standard deviation of each image: a feature network of 6 numbers."""
    import torch

    from flexdiff.measuring.features import FeatureNetwork, register_feature_network


    @register_feature_network("toy-moments")
    def moments(device, path=None):
        return FeatureNetwork("toy-moments", lambda x: torch.cat([x.mean((2, 3)), x.std((2, 3))], 1), 6, device)
'''


def test_a_feature_network_is_one_file(plugin, tmp_path: Path) -> None:
    from flexdiff.measuring.features import FEATURE_NETWORKS
    from flexdiff.measuring.metrics import fid

    plugin("toy_features", TOY_FEATURES)
    try:
        a, b = (torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) for seed in (0, 1))
        assert 0 < fid(a, b, features="toy-moments") < fid(a, b * 0.5, features="toy-moments")  # as --features toy-moments scores
        assert suites_on("toy-moments") == {"feature network"}
        run_contract("feature network", "toy-moments")
        assert files_touched(tmp_path) == 1
    finally:
        FEATURE_NETWORKS.unregister("toy-moments")


TOY_STRATEGY = '''
    """Optuna's TPE as a search strategy."""
    import optuna

    from flexdiff.search.strategies import register_strategy


    @register_strategy("toy-tpe")
    def tpe(space, schedule_key, budgets, seed, seeds):
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=2)
'''


@pytest.mark.slow
def test_a_strategy_is_one_file(plugin, tmp_path: Path, tiny_model_dir: Path) -> None:
    from flexdiff.search.config import SearchConfig
    from flexdiff.search.run import search

    plugin("toy_strategy", TOY_STRATEGY)
    try:
        config = SearchConfig(
            out=tmp_path / "run",
            model=str(tiny_model_dir),
            steps=6,
            n=8,
            trials=3,
            strategy="toy-tpe",
            segments=(2, 3),
            validate_n=8,
            validate_top=1,
            baseline_branches=(0,),
            speedup=2.0,
            progress=False,
        )
        results = search(config)
        assert len(results["trials"]["searched"]) == 3 and results["config"]["strategy"] == "toy-tpe"
        assert suites_on("toy-tpe") == {"strategy"}
        run_contract("strategy", "toy-tpe")
        assert files_touched(tmp_path) == 1
    finally:
        STRATEGIES.unregister("toy-tpe")


TOY_INTEGRATION = '''
    """A sampler object of the user's: `holder.run(n)` samples its model, under the schedule enabled on it."""
    from dataclasses import dataclass

    from flexdiff.errors import FlexdiffError
    from flexdiff.integrations import Integration, register_integration
    from flexdiff.either_loop import sample
    from flexdiff.testing import fixture_for
    from flexdiff.testing.integrations import Target


    @dataclass
    class Holder:
        model: object
        schedule: object = None

        def run(self, n):
            return sample(self.model, n, seed=0, steps=6, schedule=self.schedule)


    class HolderIntegration(Integration):
        name, description = "toy-holder", "a Holder"

        def matches(self, obj):
            return isinstance(obj, Holder)

        def enable(self, obj, schedule):
            if obj.schedule is not None:
                raise FlexdiffError("Holder", "a Holder without a schedule", "disable the schedule on it first")
            obj.schedule = schedule

        def disable(self, obj):
            obj.schedule = None


    register_integration(HolderIntegration())


    @fixture_for("integration", "toy-holder")
    def holder():
        """A Holder of a tiny UNet, called for two images; its teacher grid is the model's own DDIM grid."""
        from flexdiff.running.own_loop import teacher_timesteps
        from flexdiff.testing.tiny import tiny_plain_model
        return Target(Holder(tiny_plain_model()), lambda h: h.run(2), lambda h: teacher_timesteps(h.model, "ddim", 6), "ddim")
'''


def test_an_integration_is_one_file(plugin, tmp_path: Path, tiny_model) -> None:
    import flexdiff

    toy = plugin("toy_integration", TOY_INTEGRATION)
    try:
        holder = toy.Holder(tiny_model)
        plain = holder.run(2)
        plan = flexdiff.deepcache_uniform(flexdiff.teacher_timesteps(tiny_model, "ddim", 6), 3, 0)
        with flexdiff.enabled(holder, plan):
            got = holder.run(2)
        assert torch.equal(got, flexdiff.sample(tiny_model, 2, seed=0, schedule=plan)) and not torch.equal(got, plain)
        assert torch.equal(holder.run(2), plain)
        assert suites_on("toy-holder") == {"integration"}
        run_contract("integration", "toy-holder")
        assert files_touched(tmp_path) == 1
    finally:
        INTEGRATIONS.unregister("toy-holder")


def test_an_object_no_integration_handles_is_refused_not_ignored(tiny_model) -> None:
    """An object flexdiff cannot attach to is a one-line error, never a silent no-op."""
    import flexdiff

    plan = flexdiff.full(flexdiff.teacher_timesteps(tiny_model, "ddim", 4))
    with pytest.raises(flexdiff.FlexdiffError, match="Linear: expected an object flexdiff can enable a schedule on"):
        flexdiff.enable(torch.nn.Linear(2, 2), plan)

"""The private diffusers / torch names flexdiff relies on: every one still exists in the installed versions (an upgrade
that removes or renames one fails here, in one line, not deep in a run), every accessor of
:mod:`flexdiff.utils.diffusers_private` does what its callers need, and no other module of ``src/flexdiff`` mentions a
private name (so the module stays the one place to re-check on an upgrade)."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from flexdiff.utils import diffusers_private as dp

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "flexdiff"
HOME = PACKAGE / "utils" / "diffusers_private.py"

#: Every private name (or private-module path) the module wraps; any other module of src/flexdiff mentioning one
#: (code, docstring or comment) fails :func:`test_no_other_module_mentions_a_private_name`.
PRIVATE = re.compile(
    r"\b_helpers\b|\b_common\b|diffusers\.hooks\.hooks\b|\b_get_parameter_from_args_kwargs\b|\b_compiled_call_impl\b|\b_orig_mod\b"
    r"|\b_TAYLORSEER_CACHE_HOOK\b|\b_FBC_\w+|\b_MAG_CACHE_\w+|\b_PYRAMID_ATTENTION_BROADCAST_HOOK\b|\b_FASTER_CACHE_\w+|\b_SEA_CACHE_\w+"
    r"|\b_set_cache_context\b|\b_ALL_TRANSFORMER_BLOCK_IDENTIFIERS\b|\b_diffusers_hook\b|\b_child_registries_cache\b|\b_is_stateful\b"
    r"|\b_cache_config\b|\b_cached_parameter_indices\b|\.\s*_cls\b|TransformerBlockRegistry\s*\.\s*_"
)


def offenders(files: dict[str, str]) -> list[str]:
    """``path:line: text`` of every line mentioning a private name, over ``{path: source}``."""
    return [f"{path}:{n}: {line.strip()}" for path, text in files.items() for n, line in enumerate(text.splitlines(), 1) if PRIVATE.search(line)]


# -- (a) every private name still exists in the installed diffusers and torch ---------------------------------------------


def test_the_versions_checked_against_are_stated() -> None:
    assert set(dp.CHECKED_AGAINST) == {"diffusers", "torch"}
    for package, version in dp.CHECKED_AGAINST.items():
        assert f"{package} {version}" in (dp.__doc__ or ""), f"the module docstring does not state {package} {version}"


def test_transformer_block_registry_names_exist() -> None:
    helpers = importlib.import_module("diffusers.hooks._helpers")
    registry, metadata_cls = helpers.TransformerBlockRegistry, helpers.TransformerBlockMetadata
    assert callable(registry.get) and callable(registry._register)
    registry._register()
    assert isinstance(registry._registry, dict) and registry._registry, "TransformerBlockRegistry._registry is gone or empty"
    fields = {f.name for f in dataclasses.fields(metadata_cls)}
    assert {
        "_cls",
        "_cached_parameter_indices",
        "return_hidden_states_index",
        "return_encoder_hidden_states_index",
        "hidden_states_argument_name",
        "encoder_hidden_states_argument_name",
    } <= fields
    assert callable(metadata_cls._get_parameter_from_args_kwargs)


def test_block_identifiers_exist() -> None:
    common = importlib.import_module("diffusers.hooks._common")
    assert isinstance(common._ALL_TRANSFORMER_BLOCK_IDENTIFIERS, tuple)
    ids = dp.block_identifiers()
    assert ids == common._ALL_TRANSFORMER_BLOCK_IDENTIFIERS and {"blocks", "transformer_blocks", "single_transformer_blocks"} <= set(ids)


def test_hooks_module_names_exist() -> None:
    hooks = importlib.import_module("diffusers.hooks.hooks")
    for name in ("BaseState", "CacheContext", "StateManager", "_set_cache_context", "HookRegistry", "ModelHook"):
        assert hasattr(hooks, name), f"diffusers.hooks.hooks.{name} is gone"
    assert dp.BaseState is hooks.BaseState and dp.CacheContext is hooks.CacheContext and dp.StateManager is hooks.StateManager
    assert hooks.ModelHook._is_stateful is False
    assert callable(hooks.HookRegistry._get_child_registries)
    with pytest.raises(AttributeError):
        dp.NotAName  # noqa: B018 - the module's lazy attributes are exactly the three above


def test_hook_name_constants_exist() -> None:
    for module, name in dp.HOOK_NAME_CONSTANTS:
        value = getattr(importlib.import_module(module), name, None)
        assert isinstance(value, str), f"{module}.{name} is gone"
        assert value.startswith(dp.CACHE_HOOK_PREFIXES), f"{module}.{name} = {value!r}: not matched by CACHE_HOOK_PREFIXES"
    for module in ("first_block_cache", "taylorseer_cache", "pyramid_attention_broadcast", "mag_cache", "faster_cache", "sea_cache"):
        hooks = importlib.import_module(f"diffusers.hooks.{module}")
        names = [v for k, v in vars(hooks).items() if re.fullmatch(r"_[A-Z_]+_HOOK", k) and isinstance(v, str)]
        assert names and all(v.startswith(dp.CACHE_HOOK_PREFIXES) for v in names), f"diffusers.hooks.{module}: {names} vs {dp.CACHE_HOOK_PREFIXES}"


def test_cache_mixin_names_exist() -> None:
    from diffusers.models.cache_utils import CacheMixin

    assert "_cache_config" in vars(CacheMixin) and CacheMixin._cache_config is None


def test_torch_compile_names_exist() -> None:
    assert "_compiled_call_impl" in vars(nn.Module) and nn.Module._compiled_call_impl is None
    m = nn.Linear(2, 2)
    wrapper = torch.compile(m)  # lazy: nothing is compiled until it is called
    assert wrapper._orig_mod is m
    m.compile()
    assert m._compiled_call_impl is not None


# -- the accessors ---------------------------------------------------------------------------------------------------------


def test_block_metadata_accessors() -> None:
    from diffusers.models.transformers.transformer_flux import FluxTransformerBlock

    registered = dp.registered_block_metadata(FluxTransformerBlock)
    assert registered.return_hidden_states_index is not None and registered.return_encoder_hidden_states_index is not None
    with pytest.raises(ValueError):
        dp.registered_block_metadata(nn.Linear)
    classes = dp.registered_block_classes()
    assert any(cls is FluxTransformerBlock for cls, _ in classes)

    class Copy(FluxTransformerBlock):
        pass

    copied = dp.block_metadata_for(Copy, registered, hidden_states_argument_name="hidden_states")
    assert copied is not registered and copied.return_hidden_states_index == registered.return_hidden_states_index
    hidden, encoder = torch.zeros(1), torch.ones(1)
    assert dp.parameter_from_args_kwargs(copied, "encoder_hidden_states", (hidden, encoder), {}) is encoder  # by position in Copy.forward
    assert dp.parameter_from_args_kwargs(copied, "hidden_states", (), {"hidden_states": hidden}) is hidden

    class Own(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    own = dp.block_metadata_for(Own, return_hidden_states_index=0, return_encoder_hidden_states_index=None, hidden_states_argument_name="x")
    assert dp.parameter_from_args_kwargs(own, "x", (hidden,), {}) is hidden


def test_hook_registry_accessors() -> None:
    from diffusers.hooks import HookRegistry, ModelHook

    outer = nn.Sequential(nn.Linear(2, 2))
    assert dp.hook_registry(outer) is None
    registry = HookRegistry.check_if_exists_or_initialize(outer)
    assert dp.hook_registry(outer) is registry
    assert registry._get_child_registries() == []
    HookRegistry.check_if_exists_or_initialize(outer[0])
    assert registry._get_child_registries() == []  # the stale cache the accessor exists for
    dp.forget_child_registries(registry)
    assert registry._get_child_registries() == [dp.hook_registry(outer[0])]

    wrapper = torch.compile(nn.Linear(2, 2))
    assert dp.is_compile_wrapper(wrapper) and not dp.is_compile_wrapper(outer)
    assert dp.unwrap_compiled(wrapper) is wrapper._orig_mod and dp.unwrap_compiled(outer) is outer
    inner = HookRegistry.check_if_exists_or_initialize(dp.unwrap_compiled(wrapper))
    dp.ensure_own_hook_registry(wrapper)
    own = dp.hook_registry(wrapper)
    assert isinstance(own, HookRegistry) and own._module_ref is wrapper, "the registry must patch the wrapper's forward, outside the compiled region"
    # torch 2.13: OptimizedModule forwards the attribute write to the compiled module (replacing its registry), so the
    # accessor makes a new one on every call; a torch that keeps the write on the wrapper changes this (re-check it)
    assert "_diffusers_hook" not in vars(wrapper) and dp.hook_registry(dp.unwrap_compiled(wrapper)) is own and own is not inner
    dp.ensure_own_hook_registry(wrapper)
    assert dp.hook_registry(wrapper) is not own

    @dp.stateful_hook
    class Stateful(ModelHook):
        pass

    assert Stateful._is_stateful is True and ModelHook._is_stateful is False


def test_cache_context_reaches_stateful_hooks_only() -> None:
    from diffusers.hooks import HookRegistry, ModelHook

    seen: list[Any] = []

    class Listener(dp.StateManager):
        def __init__(self) -> None:
            super().__init__(dp.BaseState)

        def set_context(self, context: Any) -> None:
            seen.append(context)

    @dp.stateful_hook
    class Stateful(ModelHook):
        def __init__(self) -> None:
            super().__init__()
            self.listener = Listener()

    class Stateless(ModelHook):
        def __init__(self) -> None:
            super().__init__()
            self.listener = Listener()

    module = nn.Linear(2, 2)
    registry = HookRegistry.check_if_exists_or_initialize(module)
    registry.register_hook(Stateful(), "stateful")
    registry.register_hook(Stateless(), "stateless")
    context = dp.CacheContext("cond", step_index=0)
    dp.set_cache_context(module, context)
    dp.set_cache_context(module, None)
    assert seen == [context, None]


def test_cache_config_and_compiled_call_accessors() -> None:
    from diffusers import FirstBlockCacheConfig, FluxTransformer2DModel

    model = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=8,
        pooled_projection_dim=8,
        axes_dims_rope=(2, 2, 4),
    )
    model.enable_cache(FirstBlockCacheConfig(threshold=0.1))
    assert isinstance(dp.enabled_cache_config(model), FirstBlockCacheConfig)
    assert any(name.startswith(dp.CACHE_HOOK_PREFIXES) for m in model.modules() if dp.hook_registry(m) for name in dp.hook_registry(m).hooks)

    m = nn.Linear(2, 2)
    assert dp.compiled_call(m) is None
    m.compile()
    original = dp.compiled_call(m)
    assert original is not None

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **kwargs)

    dp.set_compiled_call(m, wrapped)
    assert dp.compiled_call(m) is wrapped


def test_peer_hook_names() -> None:
    assert dp.first_block_cache_hook_names() == ("fbc_leader_block_hook", "fbc_block_hook")
    assert dp.taylorseer_hook_names() == ("taylorseer_cache",)
    assert dp.pyramid_attention_broadcast_hook_names() == ("pyramid_attention_broadcast",)
    assert dp.mag_cache_hook_names() == ("mag_cache_leader_block_hook", "mag_cache_block_hook")


# -- (b) no other module mentions a private name ---------------------------------------------------------------------------


def test_no_other_module_mentions_a_private_name() -> None:
    files = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py")) if p != HOME}
    bad = offenders(files)
    assert not bad, "private diffusers / torch names outside flexdiff/utils/diffusers_private.py (add an accessor there):\n" + "\n".join(bad)


def test_the_private_name_check_can_fail() -> None:
    """The pattern finds each kind of use this module replaced (as the code read before it existed), and not the
    look-alike public or flexdiff-own names."""
    before = [
        "from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry",
        "from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS",
        "hidden = m._get_parameter_from_args_kwargs(m.hidden_states_argument_name, args, kwargs)",
        'getattr(module, "_compiled_call_impl", None)',
        "from diffusers.hooks.taylorseer_cache import _TAYLORSEER_CACHE_HOOK",
        "from diffusers.hooks.hooks import CacheContext, _set_cache_context",
        "_FBC_LEADER_BLOCK_HOOK,",
        "_MAG_CACHE_BLOCK_HOOK,",
        "_PYRAMID_ATTENTION_BROADCAST_HOOK,",
        'registry = getattr(sub, "_diffusers_hook", None)',
        "registry._child_registries_cache = None",
        "_is_stateful = True",
        'return getattr(module, "_orig_mod", module)',
        "type(module._cache_config).__name__",
        "metadata._cls = type(block)",
        "TransformerBlockRegistry._register()",
        "replace(twin, _cached_parameter_indices=None)",
    ]
    assert len(offenders({"before.py": "\n".join(before)})) == len(before)
    fine = [
        "from flexdiff.search.strategies._registry import register_strategy",
        "counts.most_common(1)",
        "def _diffusers_hooks(apply):",
        "from diffusers.hooks import HookRegistry, ModelHook",
        "TransformerBlockRegistry.get(cls)",
    ]
    assert offenders({"fine.py": "\n".join(fine)}) == []

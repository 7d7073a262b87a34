"""Every private diffusers (and torch) name flexdiff touches, each behind one accessor: the one file to re-check when
diffusers or torch is upgraded.

Why they are used at all: flexdiff attaches to *unmodified* models through diffusers' hooks, and a few things it needs
have no public API (a block class's stream layout, the model's block lists, the cache context a pipeline sets, the
hook registry a module already carries, the call slot ``module.compile()`` fills). Private names may change in any
release without notice; here they are named once, documented, and checked by ``tests/test_diffusers_private.py``,
which fails in one line when the installed diffusers or torch lacks one, and fails when any other module of
``src/flexdiff`` mentions one (add an accessor here instead).

Checked against diffusers 0.42.1 and torch 2.13.0 (:data:`CHECKED_AGAINST`: the versions installed when this module
was written; pyproject allows ``diffusers>=0.35,<0.43`` and ``torch>=2.5``, whose older releases were not re-checked
here). Imports of diffusers are lazy (inside the accessors, or on first attribute access for the three classes below),
as they were at every call site: importing :mod:`flexdiff.backbones` must not import ``diffusers.hooks``.

diffusers names, by accessor (what it is used for; what breaks if it changes):

- ``diffusers.hooks._helpers.TransformerBlockRegistry`` (``.get``, ``._register()``, ``._registry``):
  :func:`registered_block_metadata`, :func:`registered_block_classes`. The stream layout (which argument and which
  output element is the hidden / encoder stream) of every transformer block class diffusers registers, and the
  registered classes a model module's own copy of a class ("Copied from diffusers...") is matched against
  (``backbones/transformer.py``). If it changes: every transformer is refused as having blocks whose layout nobody
  describes, or its layout fails to build with an ImportError / AttributeError.
- ``diffusers.hooks._helpers.TransformerBlockMetadata`` (its private dataclass fields ``_cls``,
  ``_cached_parameter_indices``): :func:`block_metadata_for`. Metadata for the classes of ``OWN_BLOCKS`` and
  registered metadata rebound to another class or argument name (Z-Image's ``x``). If it changes: those models'
  layouts fail, or a copy reads arguments at the positions of the class it was copied from.
- ``TransformerBlockMetadata._get_parameter_from_args_kwargs``: :func:`parameter_from_args_kwargs`. A block's input
  streams from its call's args / kwargs in a partial step (``hooks/residual_step.py``). If it changes: every partial
  step on a transformer raises.
- ``diffusers.hooks._common._ALL_TRANSFORMER_BLOCK_IDENTIFIERS``: :func:`block_identifiers`. The names of the block
  lists diffusers' own hooks look for (``blocks``, ``transformer_blocks``, ...), which is how the transformer backbone
  finds a model's blocks. If it changes: an ImportError wherever a transformer's layout is read, or blocks not found.
- ``diffusers.hooks.hooks.BaseState``, ``CacheContext``, ``StateManager`` (public-looking, but ``diffusers.hooks`` does
  not re-export them, so they are treated as private surface): this module's lazy attributes of the same names. The
  pipeline clock's listener for the name of diffusers' ``cache_context`` ("cond", "uncond"), a ``StateManager``
  subclass (``integrations/diffusers_pipeline.py``), and the context the peers set per call (``search/peers.py``).
  If they change: ``flexdiff.enable`` fails at import, or classifier-free guidance calls are keyed by position only.
- ``diffusers.hooks.hooks._set_cache_context``: :func:`set_cache_context`. Runs diffusers' own caches (the search's
  peers) in flexdiff's loop inside a ``CacheContext``, as a pipeline's ``cache_context`` block does. If it changes:
  the peers fail (``--peers``).
- ``ModelHook._is_stateful``: :func:`stateful_hook`. Marks flexdiff's step hooks and the pipeline clock stateful, so
  that ``reset_stateful_hooks`` (called by pipelines) empties their cache and the cache context reaches the clock.
  If it changes: stale features could survive between pipeline calls, and cond / uncond calls lose their own caches.
- ``module._diffusers_hook`` (where ``HookRegistry`` keeps a module's registry): :func:`hook_registry`,
  :func:`ensure_own_hook_registry`. Reading the hooks on a module without creating a registry on it (refusing a second
  cache, removing flexdiff's hooks), and giving a ``torch.compile`` wrapper a registry bound to the wrapper, so the
  clock runs outside the compiled region (on torch 2.13 the wrapper forwards the write: the registry is stored on the
  compiled module, see the accessor). If it changes: hooks are not found (a second cache is not refused; removal
  misses them), or the clock joins the compiled module's registry (a recompile per step).
- ``HookRegistry._child_registries_cache``: :func:`forget_child_registries`. diffusers caches the list of hooked
  submodules once; a peer that adds hooks to submodules afterwards clears it (the public
  ``invalidate_child_registries_cache`` of 0.42 clears every registry of the tree and is absent from older releases,
  so it is not used, to keep behaviour). If it changes: the peers' cache context misses the new hooks.
- ``CacheMixin._cache_config``: :func:`enabled_cache_config`. Names the diffusers cache already enabled on a model in
  the one-line refusal of a second cache. If it changes: that refusal raises AttributeError instead.
- Hook-name constants ``_FBC_LEADER_BLOCK_HOOK``, ``_FBC_BLOCK_HOOK`` (``first_block_cache``),
  ``_TAYLORSEER_CACHE_HOOK`` (``taylorseer_cache``), ``_PYRAMID_ATTENTION_BROADCAST_HOOK``
  (``pyramid_attention_broadcast``), ``_MAG_CACHE_LEADER_BLOCK_HOOK``, ``_MAG_CACHE_BLOCK_HOOK`` (``mag_cache``):
  :func:`first_block_cache_hook_names`, :func:`taylorseer_hook_names`, :func:`pyramid_attention_broadcast_hook_names`,
  :func:`mag_cache_hook_names`. The names a peer's hooks are removed by after its run. If they change: an ImportError
  when a peer is taken off.
- The *values* of diffusers' cache hook names (the constants above, ``_FASTER_CACHE_*`` and ``_SEA_CACHE_*``):
  :data:`CACHE_HOOK_PREFIXES`, prefixes that match all of them. ``flexdiff.hooks.other_cache`` refuses a model with
  another cache's hooks on it. If a name changes: that cache is no longer detected and two caches stack silently (the
  test compares every ``_*_HOOK`` constant of those diffusers modules with the prefixes).

torch names (``torch.compile``; the slots flexdiff's clock and the transformer backbone must see through):

- ``nn.Module._compiled_call_impl`` (the call ``module.compile()`` installs in place): :func:`compiled_call`,
  :func:`set_compiled_call`. Whether a denoiser is compiled in place (``executor.is_compiled``), and the call the
  pipeline clock wraps so that it runs outside the compiled region. If it changes: in-place compiled denoisers are
  taken for eager ones (no raised recompile limit; the clock inside the graph).
- ``OptimizedModule._orig_mod`` (the module ``torch.compile(module)`` wraps): :func:`unwrap_compiled`,
  :func:`is_compile_wrapper`. The transformer backbone reads the wrapped model's block lists; the clock gives the
  wrapper its own registry. If it changes: a ``torch.compile``-wrapped transformer is not recognised.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.hooks import BaseState, CacheContext, StateManager  # noqa: F401 - the lazy attributes below
    from torch import nn

#: The versions every name here was checked against (the test asserts the docstring states them).
CHECKED_AGAINST: dict[str, str] = {"diffusers": "0.42.1", "torch": "2.13.0"}

#: Prefixes of the hook names diffusers' step caches register (PAB, FasterCache, FirstBlockCache, MagCache,
#: TaylorSeer, SeaCache): the values of the private constants listed in :data:`HOOK_NAME_CONSTANTS` and of the
#: ``_*_HOOK`` constants of their modules.
CACHE_HOOK_PREFIXES: tuple[str, ...] = ("pyramid_attention_broadcast", "faster_cache", "fbc_", "mag_cache", "taylorseer_cache", "sea_cache")

#: (module, name) of every private hook-name constant flexdiff reads or matches by value.
HOOK_NAME_CONSTANTS: tuple[tuple[str, str], ...] = (
    ("diffusers.hooks.first_block_cache", "_FBC_LEADER_BLOCK_HOOK"),
    ("diffusers.hooks.first_block_cache", "_FBC_BLOCK_HOOK"),
    ("diffusers.hooks.taylorseer_cache", "_TAYLORSEER_CACHE_HOOK"),
    ("diffusers.hooks.pyramid_attention_broadcast", "_PYRAMID_ATTENTION_BROADCAST_HOOK"),
    ("diffusers.hooks.mag_cache", "_MAG_CACHE_LEADER_BLOCK_HOOK"),
    ("diffusers.hooks.mag_cache", "_MAG_CACHE_BLOCK_HOOK"),
    ("diffusers.hooks.faster_cache", "_FASTER_CACHE_DENOISER_HOOK"),
    ("diffusers.hooks.faster_cache", "_FASTER_CACHE_BLOCK_HOOK"),
    ("diffusers.hooks.sea_cache", "_SEA_CACHE_ROOT_HOOK"),
    ("diffusers.hooks.sea_cache", "_SEA_CACHE_LEADER_BLOCK_HOOK"),
    ("diffusers.hooks.sea_cache", "_SEA_CACHE_BLOCK_HOOK"),
    ("diffusers.hooks.sea_cache", "_SEA_CACHE_POST_NORM_HOOK"),
)

#: The attribute ``HookRegistry.check_if_exists_or_initialize`` stores a module's registry under.
_REGISTRY_ATTR = "_diffusers_hook"
#: Classes of ``diffusers.hooks.hooks`` that ``diffusers.hooks`` does not re-export, served lazily by :func:`__getattr__`.
_HOOKS_MODULE_CLASSES = ("BaseState", "CacheContext", "StateManager")

HookT = TypeVar("HookT", bound=type)


def __getattr__(name: str) -> Any:
    """``BaseState``, ``CacheContext`` and ``StateManager`` of ``diffusers.hooks.hooks``, imported on first use (PEP 562),
    so that importing this module imports no diffusers."""
    if name in _HOOKS_MODULE_CLASSES:
        return getattr(importlib.import_module("diffusers.hooks.hooks"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- transformer blocks: diffusers.hooks._helpers, diffusers.hooks._common ------------------------------------------------


def registered_block_metadata(cls: type) -> Any:
    """diffusers' ``TransformerBlockMetadata`` of a block class it registers; raises ``ValueError`` for any other
    class (as ``TransformerBlockRegistry.get`` does)."""
    from diffusers.hooks._helpers import TransformerBlockRegistry

    return TransformerBlockRegistry.get(cls)


def registered_block_classes() -> list[tuple[type, Any]]:
    """Every (block class, metadata) diffusers registers, its registrations run first (they are lazy in diffusers): to
    match a model module's own copy of a registered class by name and signature."""
    from diffusers.hooks._helpers import TransformerBlockRegistry

    TransformerBlockRegistry._register()
    return list(TransformerBlockRegistry._registry.items())


def block_metadata_for(cls: type, base: Any | None = None, **fields: Any) -> Any:
    """A ``TransformerBlockMetadata`` bound to ``cls`` (whose ``forward`` signature it reads positional arguments
    from): a copy of ``base`` with ``fields`` changed and its argument-position cache dropped, or, without ``base``, a
    new one of ``fields``. The registered metadata itself is never modified."""
    from diffusers.hooks._helpers import TransformerBlockMetadata

    metadata = TransformerBlockMetadata(**fields) if base is None else replace(base, _cached_parameter_indices=None, **fields)
    metadata._cls = cls
    return metadata


def parameter_from_args_kwargs(metadata: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The argument ``name`` of a block call, by keyword or by its position in the metadata's class's ``forward``."""
    return metadata._get_parameter_from_args_kwargs(name, args, kwargs)


def block_identifiers() -> tuple[str, ...]:
    """The names diffusers' hooks give transformer block lists (``blocks``, ``transformer_blocks``,
    ``single_transformer_blocks``, ``layers``, ``temporal_transformer_blocks``, ...)."""
    from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS

    return tuple(_ALL_TRANSFORMER_BLOCK_IDENTIFIERS)


# -- hooks: diffusers.hooks.hooks ------------------------------------------------------------------------------------------


def hook_registry(module: nn.Module) -> HookRegistry | None:
    """The diffusers hook registry already on ``module``, or None; unlike ``HookRegistry.check_if_exists_or_initialize``
    it never creates one (reading must not add registries to every submodule)."""
    return getattr(module, _REGISTRY_ATTR, None)


def ensure_own_hook_registry(module: nn.Module) -> None:
    """Give ``module`` a registry bound to itself unless one is in its own ``__dict__``: a ``torch.compile`` wrapper
    forwards attribute reads to the module it compiled, so without this a hook registered on the wrapper would join
    that module's registry and patch that module's ``forward``, inside the compiled region.

    Checked behaviour (torch 2.13): ``OptimizedModule.__setattr__`` forwards this write too, so the new registry (bound
    to the wrapper: its hooks patch the wrapper's ``forward``) is stored on the compiled module, replacing any registry
    it had, and is made anew on every call. ``tests/test_diffusers_private.py`` pins this down."""
    if _REGISTRY_ATTR not in vars(module):
        from diffusers.hooks import HookRegistry

        setattr(module, _REGISTRY_ATTR, HookRegistry(module))


def forget_child_registries(registry: HookRegistry) -> None:
    """Drop the registry's cached list of hooked submodules (built once by diffusers): needed after hooks were added
    to, or removed from, submodules, so that the cache context reaches them."""
    registry._child_registries_cache = None


def set_cache_context(module: nn.Module, context: CacheContext | None) -> None:
    """Set (``None``: clear) the cache context on every stateful hook's ``StateManager`` under ``module``, as a
    pipeline's ``with denoiser.cache_context(name):`` does."""
    from diffusers.hooks.hooks import _set_cache_context

    _set_cache_context(module, context)


def stateful_hook(cls: HookT) -> HookT:
    """Class decorator: mark a ``ModelHook`` subclass stateful, so that diffusers' ``reset_stateful_hooks`` calls its
    ``reset_state`` and the cache context reaches its ``StateManager`` attributes."""
    cls._is_stateful = True  # type: ignore[attr-defined]
    return cls


def enabled_cache_config(module: Any) -> Any:
    """The config of the cache diffusers' ``enable_cache`` put on ``module`` (``CacheMixin``); read only where
    ``module.is_cache_enabled``."""
    return module._cache_config


def first_block_cache_hook_names() -> tuple[str, ...]:
    """The names FirstBlockCache registers its hooks under (leader block first)."""
    from diffusers.hooks.first_block_cache import _FBC_BLOCK_HOOK, _FBC_LEADER_BLOCK_HOOK

    return (_FBC_LEADER_BLOCK_HOOK, _FBC_BLOCK_HOOK)


def taylorseer_hook_names() -> tuple[str, ...]:
    """The name TaylorSeer registers its hooks under."""
    from diffusers.hooks.taylorseer_cache import _TAYLORSEER_CACHE_HOOK

    return (_TAYLORSEER_CACHE_HOOK,)


def pyramid_attention_broadcast_hook_names() -> tuple[str, ...]:
    """The name Pyramid Attention Broadcast registers its hooks under."""
    from diffusers.hooks.pyramid_attention_broadcast import _PYRAMID_ATTENTION_BROADCAST_HOOK

    return (_PYRAMID_ATTENTION_BROADCAST_HOOK,)


def mag_cache_hook_names() -> tuple[str, ...]:
    """The names MagCache registers its hooks under (leader block first)."""
    from diffusers.hooks.mag_cache import _MAG_CACHE_BLOCK_HOOK, _MAG_CACHE_LEADER_BLOCK_HOOK

    return (_MAG_CACHE_LEADER_BLOCK_HOOK, _MAG_CACHE_BLOCK_HOOK)


# -- torch.compile: nn.Module._compiled_call_impl, OptimizedModule._orig_mod -----------------------------------------------


def compiled_call(module: object) -> Callable[..., Any] | None:
    """The compiled call ``module.compile()`` installed in place (what ``module(...)`` runs instead of its
    ``_call_impl``), or None for a module not compiled in place (or any object that is not a module)."""
    return getattr(module, "_compiled_call_impl", None)


def set_compiled_call(module: nn.Module, fn: Callable[..., Any]) -> None:
    """Replace the in-place compiled call of ``module`` (the pipeline clock wraps it, and restores it on disable)."""
    module._compiled_call_impl = fn


def is_compile_wrapper(module: nn.Module) -> bool:
    """Whether ``module`` is the wrapper ``torch.compile(m)`` returns (``OptimizedModule``)."""
    return hasattr(module, "_orig_mod")


def unwrap_compiled(module: nn.Module) -> nn.Module:
    """The module itself under a ``torch.compile(m)`` wrapper (whose only child is the compiled module); any other
    module as it is."""
    return getattr(module, "_orig_mod", module)

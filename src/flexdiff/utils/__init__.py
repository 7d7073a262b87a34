"""Small shared utilities, one place each: atomic writes and JSON reading (:mod:`.io`), weight hashing
(:mod:`.hashing`), Pareto fronts (:mod:`.pareto`), training-loop pieces (:mod:`.training`), registries
(:mod:`.registry`), devices, progress bars, optional packages and text shown or stored (:mod:`.text`: control
characters escaped, URL passwords masked), and every private diffusers / torch name flexdiff relies on, behind
accessors (:mod:`.diffusers_private`: the one module to re-check on an upgrade). Nothing here imports another flexdiff
layer (only :mod:`flexdiff.errors`)."""

"""DiffNAS (Tang et al. 2023): block-wise distillation architecture search for diffusers UNets.

Phases of ``flexdiff compress`` (see :mod:`flexdiff.nas.compress`): record the teacher's block inputs and outputs
(:mod:`.record`) -> train one weight-sharing supernet per block to imitate the teacher's block (:mod:`.supernet`,
:mod:`.distill`) -> evaluate every candidate and pick per-block choices under a global MACs / parameter budget
(:mod:`.local_search`) -> retrain the assembled student with the dynamic joint loss (:mod:`.retrain`) -> save it as a
model folder every flexdiff command loads (:mod:`.student`).
"""

"""Schedule files record what they were made for; another model or scheduler refuses them in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from folders import invoke, ok, one_line_error

import flexdiff
from flexdiff.errors import FlexdiffError
from flexdiff.models import DEFAULT_SCHEDULER_CONFIG
from flexdiff.schedule import bind
from flexdiff.testing.tiny import tiny_unet


def test_a_schedule_file_records_its_model_and_the_digits_one_is_refused_on_an_sd_folder(sd_dir: Path, tmp_path: Path) -> None:
    plan = tmp_path / "digits.json"
    ok(invoke("schedule", "ddim", "--k", "5", "--model", "builtin:digits", "--out", plan))
    bound = json.loads(plan.read_text())["meta"]["bound_to"]
    digits = flexdiff.load_model("builtin:digits", "cpu")
    assert bound == digits.binding("ddim").to_json() and len(bound["branches"]) == 9
    one_line_error(invoke("sample", "--model", sd_dir, "--schedule", plan, "--n", "1", "--out", tmp_path / "o"), "made for another model (weights")
    assert not (tmp_path / "o").exists()
    ok(invoke("sample", "--model", "builtin:digits", "--schedule", plan, "--n", "1", "--out", tmp_path / "same"))  # its own model takes it
    # the explicit override: DDIM-5 has no partial steps, so it fits the SD folder's timesteps anyway
    ok(invoke("sample", "--model", sd_dir, "--schedule", plan, "--n", "1", "--ignore-binding", "--out", tmp_path / "forced"))


def test_python_refuses_it_too_and_unbound_schedules_apply_anywhere(tiny_model) -> None:
    digits = flexdiff.load_model("builtin:digits", "cpu")
    ts = flexdiff.teacher_timesteps(tiny_model, "ddim", 6)
    plan = flexdiff.ddim_k(ts, 3)
    foreign = bind(plan, digits.binding("ddim"))
    with pytest.raises(FlexdiffError, match="made for another model"):
        flexdiff.sample(tiny_model, 2, seed=0, schedule=foreign)
    assert torch.equal(flexdiff.sample(tiny_model, 2, seed=0, schedule=foreign, strict=False), flexdiff.sample(tiny_model, 2, seed=0, schedule=plan))
    own = bind(plan, tiny_model.binding("ddim"))
    assert torch.equal(flexdiff.sample(tiny_model, 2, seed=0, schedule=own), flexdiff.sample(tiny_model, 2, seed=0, schedule=plan))


def test_enable_refuses_a_schedule_made_for_another_model_or_scheduler(tmp_path: Path) -> None:
    import diffusers

    pipe = diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=diffusers.DDIMScheduler.from_config(DEFAULT_SCHEDULER_CONFIG))
    ts = flexdiff.pipeline_timesteps(pipe, 6)
    digits = flexdiff.load_model("builtin:digits", "cpu")
    path = tmp_path / "foreign.json"
    bind(flexdiff.full(ts), digits.binding("ddim")).save(path)
    with pytest.raises(FlexdiffError, match="foreign.json: made for another model"):
        flexdiff.enable(pipe, path)
    assert getattr(pipe, "_flexdiff_enabled", None) is None
    flexdiff.enable(pipe, path, strict=False)
    flexdiff.disable(pipe)
    integration = flexdiff.integrations.integration_for(pipe)
    mine = integration.binding(pipe)
    bind(flexdiff.full(ts), mine).save(path)
    with flexdiff.enabled(pipe, path):  # made for this pipeline
        pass
    other = diffusers.DDPMPipeline(unet=pipe.unet, scheduler=diffusers.DDPMScheduler.from_config(DEFAULT_SCHEDULER_CONFIG))
    with pytest.raises(FlexdiffError, match="scheduler 'DDIMScheduler' here 'DDPMScheduler'"):
        flexdiff.enable(other, path)  # same weights, another scheduler class

"""Schedules as data: constructors of every baseline, the genome, JSON round trip and validation."""

from __future__ import annotations

import itertools
import json
import math
import warnings
from pathlib import Path

import pytest

from flexdiff.errors import FlexdiffError
from flexdiff.schedule import (
    FULL,
    NULL,
    PARTIAL,
    Genome,
    Schedule,
    Segment,
    Step,
    ddim_k,
    deepcache_nonuniform,
    deepcache_uniform,
    full,
    nonuniform_full_indices,
)

TS = list(range(980, -1, -20))  # T = 50, DDIM "leading" grid


def test_full_and_ddim_k() -> None:
    assert full(TS).counts() == {FULL: 50, PARTIAL: 0, NULL: 0}
    for k in (1, 7, 10, 20, 50):
        plan = ddim_k(TS, k)
        assert plan.counts() == {FULL: k, PARTIAL: 0, NULL: 50 - k}
        assert plan.steps[0].kind == FULL
    assert ddim_k(TS, 10).active_timesteps == TS[::5]


@pytest.mark.parametrize("interval", [1, 2, 3, 5, 7])
def test_deepcache_uniform(interval: int) -> None:
    plan = deepcache_uniform(TS, interval, branch=2)
    assert [i for i, s in enumerate(plan.steps) if s.kind == FULL] == list(range(0, 50, interval))
    assert all(s == Step(PARTIAL, 2) for s in plan.steps if s.kind != FULL)


def test_deepcache_nonuniform_clusters_full_steps_around_the_centre() -> None:
    plan = deepcache_nonuniform(TS, 5, branch=0, center=15, power=1.4)
    fulls = [i for i, s in enumerate(plan.steps) if s.kind == FULL]
    assert len(fulls) == math.ceil(50 / 5) and fulls[0] == 0
    gaps = {i: b - a for a, b in zip(fulls, fulls[1:]) for i in (a,)}
    near = min(gaps.items(), key=lambda kv: abs(kv[0] - 15))[1]
    assert near < max(gaps.values())  # denser near step 15 than at the far end
    assert nonuniform_full_indices(50, 10, 15, 1.0) == sorted(set(nonuniform_full_indices(50, 10, 15, 1.0)))


def test_genome_segment_rule_for_t_not_divisible() -> None:
    """T = 50 in 3 segments: starts 0, 16, 33 (floor(s T / n)), lengths 16, 17, 17."""
    assert Genome.segment_lengths(50, 3) == [16, 17, 17]
    genome = Genome((Segment(0, 3), Segment(4, 1), Segment(1, 16)))
    plan = genome.expand(TS)
    assert [str(s) for s in plan.steps[:17]] == ["full", "partial:0", "partial:0"] + ["null"] * 13 + ["full"]
    assert plan.steps[17:33] == (Step(NULL),) * 16
    assert plan.steps[33:] == (Step(FULL),) + (Step(PARTIAL, 1),) * 15 + (Step(NULL),)
    assert Genome.parse("0:3,4:1,1:16") == genome
    with pytest.raises(FlexdiffError, match="interval"):
        Genome((Segment(0, 17), Segment(0, 1), Segment(0, 1))).expand(TS)


@pytest.mark.parametrize("spacing", [1.25, 1.5, 2.0, 3.0])
def test_spaced_segments_cover_t_and_shorten_towards_the_clean_end(spacing: float) -> None:
    for n in (1, 4, 10, 16, 17, 25, 49, 50):
        lengths = Genome.segment_lengths(50, n, spacing)
        assert len(lengths) == n and sum(lengths) == 50 and min(lengths) >= 1
        if 2 <= n <= 25:
            assert lengths[0] > lengths[-1]  # long segments where the sample is still noise, short ones near t = 0
    genome = Genome.parse(f"0:1,2:2,1:1,0:1@{spacing:g}")
    assert genome.spacing == spacing and Genome.parse(str(genome)) == genome
    assert genome.key != Genome.parse("0:1,2:2,1:1,0:1").key and genome.key.endswith(f"-p{spacing:g}")
    starts = [i for i, s in enumerate(genome.expand(TS).steps) if s.kind == FULL]
    assert starts == [0, *itertools.accumulate(Genome.segment_lengths(50, 4, spacing)[:-1])]


@pytest.mark.parametrize("spacing", [1.2345678, 1 / 3, 1e-7])
def test_a_spacing_with_many_digits_reads_back_exactly(spacing: float) -> None:
    """A genome's text is what the search stores and parses back: a lossy power would leave the allowed choices."""
    genome = Genome.parse(f"0:1,2:2@{spacing!r}")
    assert Genome.parse(str(genome)) == genome and Genome.parse(str(genome)).spacing == spacing
    assert genome.key != Genome.parse(f"0:1,2:2@{spacing * (1 + 1e-6)!r}").key


def test_equal_spacing_is_the_papers_segments_and_bad_spacings_are_refused() -> None:
    assert Genome.segment_lengths(50, 3, 1.0) == Genome.segment_lengths(50, 3) == [16, 17, 17]
    assert str(Genome.parse("0:1,1:2@1")) == "0:1,1:2"  # the equal-segment genome keeps its plain name
    for bad in ("0:1@0", "0:1@-2", "0:1@x", "0:1@inf"):
        with pytest.raises(FlexdiffError, match="spacing|POWER"):
            Genome.parse(bad)


def test_ddim_k_is_the_genome_of_k_segments_with_interval_1() -> None:
    for k in (5, 7, 13, 17, 20, 25, 50):
        assert Genome((Segment(0, 1),) * k).expand(TS).steps == ddim_k(TS, k).steps


def test_json_round_trip(tmp_path: Path) -> None:
    plan = Genome.parse("2:4,0:2").expand(TS, "dpmpp-2m")
    plan.save(tmp_path / "s.json")
    loaded = Schedule.load(tmp_path / "s.json")
    assert loaded == plan and loaded.sampler == "dpmpp-2m" and loaded.meta == plan.meta


def _write(tmp_path: Path, **changes) -> Path:
    data = full(TS[:4]).to_dict() | changes
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data) if not isinstance(changes.get("raw"), str) else changes["raw"])
    return path


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"steps": ["full", "full", "full"]}, "T equal to the number of steps"),
        ({"steps": ["full", "full", "full"], "T": 3}, "one step per teacher timestep"),
        ({"steps": ["null", "full", "full", "full"]}, "first step to be 'full'"),
        ({"steps": ["partial:0", "full", "full", "full"]}, "first step to be 'full'"),
        ({"steps": ["full", "partial", "full", "full"]}, "partial:<branch>"),
        ({"steps": ["full", "skip", "full", "full"]}, "'skip'"),
        ({"timesteps": [1, 2, 3, 4]}, "decreasing"),
        ({"version": 99}, "version"),
        ({"format": "other"}, "format"),
        ({"raw": "{not json"}, "does not parse"),
        ({"meta": [1, 2]}, "'meta' field"),
        ({"steps": ["full", "partial:\u00b2", "full", "full"]}, "partial:<branch>"),  # "²" passes str.isdigit(), not int()
        ({"sampler": "euler"}, "'sampler' field of"),
        ({"name": "two\nlines", "steps": ["null", "full", "full", "full"]}, "two\\nlines"),  # still one line
        # NaN passed the decreasing check (every comparison with it is false); inf, 1e30 and -1 reached the samplers
        ({"timesteps": [900, float("nan"), 500, 100]}, "timestep nan: expected finite timesteps"),
        ({"timesteps": [float("inf"), 600, 500, 100]}, "timestep inf"),
        ({"timesteps": [10**30, 600, 500, 100]}, "timestep 1000000000000000000000000000000"),
        ({"timesteps": [900, 600, 500, -1]}, "timestep -1"),
        ({"raw": '{"timesteps": [' + "9" * 5000 + "]}"}, "does not parse"),  # over Python's 4300 digits: a ValueError, not a traceback
        # a sampler its binding does not record: one sampler would run while the binding check vouches for another
        ({"sampler": "dpmpp-2m", "meta": {"bound_to": {"scheduler": "flexdiff:ddim"}}}, "the sampler its binding records (ddim)"),
        ({"sampler": "ddim", "meta": {"bound_to": {"scheduler": "flexdiff:flow-euler"}}}, "the sampler its binding records (flow-euler)"),
        # a bloated meta: copied into every run.json made with the schedule
        ({"meta": {"notes": "x" * 100_000}}, "meta of 100,013 bytes: expected at most 65,536 bytes"),
    ],
)
def test_bad_schedule_files(tmp_path: Path, changes: dict, needle: str) -> None:
    with pytest.raises(FlexdiffError, match=None) as info:
        Schedule.load(_write(tmp_path, **changes))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_sampler_its_binding_records_loads(tmp_path: Path) -> None:
    # a diffusers class: the pipeline's own scheduler runs it whatever the file's sampler says (tests/test_binding.py)
    for sampler, scheduler in (("dpmpp-2m", "flexdiff:dpmpp-2m"), ("pipeline", "DDIMScheduler"), ("ddim", "DDIMScheduler")):
        assert Schedule.load(_write(tmp_path, sampler=sampler, meta={"bound_to": {"scheduler": scheduler}})).sampler == sampler


def test_branch_range_check() -> None:
    plan = deepcache_uniform(TS, 2, branch=6)
    plan.check_branches(7)
    with pytest.raises(FlexdiffError, match=r"step 1 = partial:6.*\[0, 5\]"):
        plan.check_branches(6)


def test_save_refuses_a_folder_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    with pytest.raises(FlexdiffError, match="not a folder"):
        full(TS).save(tmp_path)
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(FlexdiffError, match="afile"):
        full(TS).save(tmp_path / "afile" / "s.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"] and (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize("power", [0.0, -1.0, 0.5, float("nan"), float("inf")])
def test_nonuniform_deepcache_needs_a_power_of_at_least_one(power: float) -> None:
    with pytest.raises(FlexdiffError, match="power >= 1"):
        deepcache_nonuniform(TS, 3, center=10, power=power)


def test_timesteps_outside_the_models_range_are_named_before_sampling() -> None:
    from flexdiff.noise import FlowSchedule, NoiseSchedule

    plan = full([5000, 500, 0])
    plan.check_timesteps(NoiseSchedule.from_scheduler_config({"num_train_timesteps": 6000}))
    with pytest.raises(FlexdiffError, match=r"plan.json timesteps 5000\.\.0: expected timesteps in \[0, 1000\)"):
        plan.check_timesteps(NoiseSchedule.from_scheduler_config({}), where="plan.json")
    with pytest.raises(FlexdiffError, match=r"sigmas in \(0, 1\]"):  # a UNet's schedule on a flow model
        plan.check_timesteps(FlowSchedule(), where="plan.json")
    with pytest.raises(FlexdiffError, match="integer timesteps"):  # a flow model's sigmas on a UNet
        full([1.0, 0.5, 0.1], "flow-euler").check_timesteps(NoiseSchedule.from_scheduler_config({}), where="plan.json")


def test_a_searched_genome_re_expands_at_another_step_count(tmp_path: Path) -> None:
    """One search for every step count: the segments keep their length in steps (their count scales with T'/T, each
    takes the gene at its place), so the plan keeps its shares of full and of partial steps, hence of MACs; moving
    it back gives the searched plan; a plan without a genome is refused in one line."""
    from flexdiff.schedule import for_steps

    genome = "0:2,1:3,0:1,2:4f,0:1,1:2,0:3,0:1,2:2,0:1@1.5"
    searched = Genome.parse(genome).expand(list(range(980, -1, -20)), "ddim")  # T = 50, 10 segments, 20 active steps

    def shares(plan: Schedule) -> tuple[float, float]:
        kinds = [s.kind for s in plan.steps]
        return kinds.count("full") / plan.T, len(plan.active_indices) / plan.T

    for T in (20, 30, 100):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            moved = for_steps(searched, list(range(T - 1, -1, -1)))
        assert bool(caught) == (T < 25)  # below half the searched count: measured far from the teacher, said so
        assert moved.T == T and moved.sampler == "ddim" and moved.meta["searched_at"] == {"T": 50, "genome": genome}
        assert len(Genome.parse(moved.meta["genome"]).segments) == round(10 * T / 50)
        assert all(abs(a - b) <= 0.1 for a, b in zip(shares(moved), shares(searched)))  # full and active shares kept
        assert Genome.parse(moved.meta["genome"]).spacing == 1.5 and "forecast:2" in {str(s) for s in moved.steps}
        back = for_steps(Schedule.from_dict(json.loads(json.dumps(moved.to_dict()))), searched.timesteps)  # through a file
        assert back.steps == searched.steps and "searched_at" not in back.meta
    with pytest.warns(UserWarning, match="search at 3 steps"):
        assert for_steps(searched, [3, 2, 1]).T == 3  # fewer steps than segments: fewer segments
    with pytest.raises(FlexdiffError, match="carries its genome") as err:
        for_steps(full(list(range(980, -1, -20))), list(range(20)))
    assert "\n" not in str(err.value)

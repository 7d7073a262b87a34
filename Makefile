# Two commands from a fresh clone: `make demo` and `make test` (both create .venv and install first).
VENV   := .venv
PY     := $(VENV)/bin/python
FLEX   := $(VENV)/bin/flexdiff
export HF_HUB_OFFLINE := 1
DEMO   := demo-out

.PHONY: install demo test test-fast clean

install: $(VENV)/.installed

# torch first, from the pinned CPU wheel; the constraints file keeps every later resolver on torch==2.13.0.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"  # test = search + sd extras + pytest
	touch $@

# The main job on the built-in model: a Flexiffusion search for a 3x MACs budget at the default settings (4 noises,
# the paired distance, 120 trials), the baselines on the same noise, then the validated table on 1000 noises the
# search never saw (so its FID compares schedules on one noise set). Rerunning resumes the same study.
demo: install
	$(FLEX) search --model builtin:digits --sampler ddim --solver ddim-2m --steps 50 --speedup 3 --validate-n 1000 --seed 0 --out $(DEMO)

# the linter and the formatter first (pinned in the test extra: one version, one formatting), then every test
test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

# the fast lane: everything but the end-to-end runs (under a minute)
test-fast: install
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) $(DEMO)

# Two commands from a fresh clone: `make demo` and `make test` (both create .venv and install first).
VENV   := .venv
PY     := $(VENV)/bin/python
FLEX   := $(VENV)/bin/flexdiff
export HF_HUB_OFFLINE := 1
DEMO   := demo-out

.PHONY: install demo test clean

install: $(VENV)/.installed

# torch first, from the pinned CPU wheel; the constraints file keeps every later resolver on torch==2.13.0.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	touch $@

demo: install
	$(FLEX) sample --model builtin:digits --sampler ddim --steps 50 --n 1000 --seed 0 --out $(DEMO)
	@echo "FID of the built-in teacher (DDIM-50, 1000 samples) vs held-out digits:"
	$(FLEX) eval --samples $(DEMO)/samples.npz --reference builtin:digits-heldout
	@echo "real-vs-real FID (1000 training images vs held-out digits), the floor at this sample size:"
	$(FLEX) eval --samples builtin:digits-train --n 1000 --reference builtin:digits-heldout
	@echo "grid of samples: $(DEMO)/grid.png"

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO)

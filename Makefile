# The two entry points of the README. Each installs whatever is missing first.
VENV  := .venv
STAMP := $(VENV)/.deepfpga-installed

.PHONY: setup demo test lint

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/deepfpga run

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts

test: $(STAMP) lint
	$(VENV)/bin/pytest -q

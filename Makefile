# The few commands people type. Each creates .venv on first use; repeat runs skip installed packages.
PY := .venv/bin/python
STAMP := .venv/.raysattr-installed

.PHONY: demo test lint format bench clean

$(PY):
	python3 -m venv .venv

# torch==2.13.0 first: it is a local CPU wheel here; any other torch pulls gigabytes of CUDA packages.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	# memelite's TOMTOM is numba code compiled on first use (minutes on 2 cores), then cached.
	$(PY) -c "from raysattr.stats.database import warm_tomtom; warm_tomtom()"
	touch $(STAMP)

demo: $(STAMP)
	.venv/bin/raysattr demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	.venv/bin/ruff check raysattr jobs tests benchmarks
	.venv/bin/ruff format --check raysattr jobs tests benchmarks

format: $(STAMP)
	.venv/bin/ruff format raysattr jobs tests benchmarks
	.venv/bin/ruff check --fix raysattr jobs tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/engine.py
	$(PY) benchmarks/pipeline.py
	$(PY) benchmarks/aggregate.py

clean:
	rm -rf outputs .pytest_cache

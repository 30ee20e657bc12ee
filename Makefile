# The two commands a new user needs: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install demo lint test bench reliability smoke-compose clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[vendor,client,dev]'
	touch $@

# The format check, the linter and the type check; `make test` (and so .ci/run) runs them first.
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared_schemas model_io vendor_service

test: install lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: install
	$(PY) scripts/demo.py

bench: install
	$(PY) benchmarks/run_all.py

reliability: install
	$(PY) -m pytest -q -m reliability --run-reliability tests

smoke-compose:
	bash scripts/compose-smoke.sh

clean:
	rm -rf $(VENV) runs .pytest_cache

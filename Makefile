# The two commands a new user needs: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install demo lint test bench reliability smoke-compose clean clean-all

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

# `clean` keeps what lives outside the repository: the demo benchmark that `make demo` generates
# under $VL2V_DATA_DIR (default ~/.cache/vl2v/data) and the client's default cache ~/.cache/vl2v.
clean:
	rm -rf $(VENV) runs .pytest_cache

# Everything the project writes: what `clean` removes, the lint caches, the README
# walkthrough's files in the repository root, the demo benchmark and the client's default cache
# (paid teacher answers included). Docker volumes are separate: `docker compose down -v`.
DATA_DIR ?= $(or $(VL2V_DATA_DIR),$(HOME)/.cache/vl2v/data)
clean-all: clean
	rm -rf .mypy_cache .ruff_cache vendor-data .cache/vl2v red.png spend.html
	rm -rf "$(DATA_DIR)/vl2v-demo-pacs-v1" "$(DATA_DIR)"/.vl2v-demo-pacs-v1.tmp-*
	rm -rf "$(HOME)/.cache/vl2v"

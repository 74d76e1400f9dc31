# make demo  - install what is needed, then walk through a small scenario in a throwaway namespace
# make test  - install what is needed, then run the whole test suite (as root)
# make bench - print the benchmarks' figures (bench/attach.py, bench/ports.py, bench/dns.py,
#              bench/plugins.py, bench/overlay.py)

VENV := .venv
PY := $(VENV)/bin/python

.PHONY: deps test unit lint demo bench clean

deps: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install-deps.sh
	./scripts/install-deps.sh
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

lint: deps
	$(VENV)/bin/ruff check src tests bench

test: deps lint
	$(PY) -m pytest -q

unit: deps
	$(PY) -m pytest -q tests/unit

demo: deps
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" ./scripts/demo.sh

bench: deps
	$(PY) bench/attach.py
	$(PY) bench/ports.py
	$(PY) bench/dns.py
	$(PY) bench/plugins.py
	$(PY) bench/overlay.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache .hypothesis

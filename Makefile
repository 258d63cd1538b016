# Everything a fresh machine needs: only Python 3.11 (or newer) and the package index.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
DEMO   ?= demo

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

# The main job on the embedded synthetic sample, end to end.
demo: install
	rm -rf $(DEMO)
	$(PY) -m ingest.sample --out $(DEMO)/wiki_crop --n 3000
	$(PY) -m ingest --src $(DEMO)/wiki_crop --out $(DEMO)/shards/wiki --image_size 64
	$(PY) -m records inspect $(DEMO)/shards/wiki

bench: install
	$(PY) -m bench.ingest
	$(PY) -m bench.stream

clean:
	rm -rf $(VENV) demo shards runs .pytest_cache

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

# The main job on the embedded synthetic sample, end to end (about a minute on 2 cores):
# sample -> ingest -> train (cpu.flags; evaluates on the test split at the end) -> predict.
DEMO_PHOTO = $$(sed -n 2p runs/demo/predictions.csv | cut -d, -f1)
PORTRAIT = $$($(PY) -c "import importlib.util,os;print(os.path.join(importlib.util.find_spec('skimage').submodule_search_locations[0],'data','astronaut.png'))")
demo: install
	rm -rf $(DEMO) runs/demo
	$(PY) -m ingest.sample --out $(DEMO)/wiki_crop --n 3000
	$(PY) -m ingest --src $(DEMO)/wiki_crop --out $(DEMO)/shards/wiki --image_size 32
	$(PY) -m records verify $(DEMO)/shards/wiki
	$(PY) -m trainer --flagfile=cpu.flags
	$(PY) -m trainer.predict --model_dir runs/demo --out runs/demo/predict --no_detect $(DEMO)/wiki_crop/$(DEMO_PHOTO)
	@echo "# A real photo through face detection (the demo model learned synthetic faces, so its age is not meaningful):"
	$(PY) -m trainer.predict --model_dir runs/demo --out runs/demo/predict $(PORTRAIT)
	$(PY) -m trainer.export --model_dir runs/demo --out runs/demo/export --tflite=float16
	@echo "# The first photo through the exported SavedModel, in plain TensorFlow (python -I: no project code):"
	$(PY) -I -c "import sys, tensorflow as tf; m = tf.saved_model.load(sys.argv[1]); \
	  out = m.signatures['serving_default'](image_bytes=tf.constant([open(sys.argv[2], 'rb').read()])); \
	  print(sys.argv[2] + ': apparent age %.1f' % float(out['apparent_age'][0]))" runs/demo/export $(DEMO)/wiki_crop/$(DEMO_PHOTO)
	@echo "Artifacts: shards in $(DEMO)/shards/wiki (manifest.json, age_gender.png);"
	@echo "  run in runs/demo: best.keras, history.csv, report.json, predictions.csv, learning_curves.png, mae_by_age.png, tb/, predict/,"
	@echo "  export/ (SavedModel, model.tflite, export.json)"

bench: install
	$(PY) -m bench.ingest
	$(PY) -m bench.stream
	$(PY) -m bench.cache
	$(PY) -m bench.service

clean:
	rm -rf $(VENV) demo shards runs .pytest_cache

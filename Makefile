# Everything a fresh machine needs: only Python 3.11 (or newer) and the package index.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
DEMO   ?= demo

export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test demo demo-dex bench clean model

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
	$(PY) -m serving.predict --model_dir runs/demo --pictures_dir runs/demo/predict --no_detect $(DEMO)/wiki_crop/$(DEMO_PHOTO)
	@echo "# A real photo, answered by the shipped model (models/small-utkface, trained on real UTKFace faces;"
	@echo "# the demo model above learned synthetic faces): its age, its 90% interval and an annotated picture:"
	$(PY) -m serving.predict --pictures_dir runs/demo/predict $(PORTRAIT)
	$(PY) -m serving.export --model_dir runs/demo --out runs/demo/export --tflite=float16
	@echo "# The first photo through the exported SavedModel, in plain TensorFlow (python -I: no project code, so"
	@echo "# TensorFlow's own start-up notices of a CPU machine, I0000 and E0000 cuInit lines included, print as they are):"
	$(PY) -I -c "import sys, tensorflow as tf; m = tf.saved_model.load(sys.argv[1]); \
	  out = m.signatures['serving_default'](image_bytes=tf.constant([open(sys.argv[2], 'rb').read()])); \
	  print(sys.argv[2] + ': apparent age %.1f' % float(out['apparent_age'][0]))" runs/demo/export $(DEMO)/wiki_crop/$(DEMO_PHOTO)
	@echo "Artifacts: shards in $(DEMO)/shards/wiki (manifest.json, age_gender.png);"
	@echo "  run in runs/demo: best.keras, history.csv, report.json, predictions.csv, learning_curves.png, mae_by_age.png, tb/, predict/,"
	@echo "  export/ (SavedModel, model.tflite, export.json)"

# DEX's two stages on the samples, tiny variant (about half a minute on 2 cores): stage 1 on the
# synthetic wiki sample (cpu.flags), stage 2 = dex.flags at tiny size on the synthetic
# APPA-REAL sample, from stage 1; prints the stage-2 report with its epsilon-error.
DEX_DEMO = $(DEMO)/dex
DEX_TINY = --variant=tiny --weights=none --dropout=0.1 --batch_size=32 --mixed_precision=none --nojit_compile
demo-dex: install
	rm -rf $(DEX_DEMO) runs/demo-dex-stage1 runs/demo-dex
	$(PY) -m ingest.sample --out $(DEX_DEMO)/wiki_crop --n 3000
	$(PY) -m ingest --src $(DEX_DEMO)/wiki_crop --out $(DEX_DEMO)/shards/wiki --image_size 32
	$(PY) -m ingest.sample --dataset appa_real --out $(DEX_DEMO)/appa-real-release --n 1500
	$(PY) -m ingest --src $(DEX_DEMO)/appa-real-release --out $(DEX_DEMO)/shards/appa_real --image_size 32
	$(PY) -m trainer --flagfile=cpu.flags --records=$(DEX_DEMO)/shards/wiki --model_dir=runs/demo-dex-stage1 --epochs=20 --noevaluate
	$(PY) -m trainer --flagfile=dex.flags $(DEX_TINY) --records=$(DEX_DEMO)/shards/appa_real --init_from=runs/demo-dex-stage1 --model_dir=runs/demo-dex --epochs=15 --warmup_epochs=1 --learning_rate=0.003
	@echo "Stage 1: runs/demo-dex-stage1; stage 2: runs/demo-dex (report.json has epsilon_error, mae_apparent, mae_real)"

bench: install
	$(PY) -m bench.ingest
	$(PY) -m bench.stream
	$(PY) -m bench.cache
	$(PY) -m bench.service
	$(PY) -m bench.predict
	$(PY) -m bench.faults
	$(PY) -m bench.startup

clean:
	rm -rf $(VENV) demo shards runs .pytest_cache

# The shipped model (models/$(MODEL), serving.shipped) rebuilt from UTKFace's crop_part1 folder
# (SRC): ingest with the default face finding, train (utkface.flags), evaluate with calibrated
# intervals (no face thumbnails: no real face goes into the repository), export with its
# float16 TFLite, then build the folder with its model card (serving.ship). About an hour on
# 2 cores (docs/training.md). MODEL_WORK keeps the shards, run and export; CROSS: optional
# trainer.evaluate reports of the run on other data sets for the card.
MODEL      ?= small-utkface
MODEL_WORK ?= bench_out/model-$(MODEL)
CROSS      ?=
model: install
	@test -n "$(SRC)" || { echo "usage: make model SRC=path/to/crop_part1 [MODEL_WORK=dir]"; exit 2; }
	$(PY) -m ingest --src $(SRC) --out $(MODEL_WORK)/shards --image_size 64 --reframe blazeface --margin 0
	$(PY) -m trainer --flagfile=utkface.flags --records=$(MODEL_WORK)/shards --model_dir=$(MODEL_WORK)/run --noevaluate
	$(PY) -m trainer.evaluate --model_dir $(MODEL_WORK)/run --calibrate --tta=flip --nothumbnails --challenge_age 25 --max_false_adult 0.05
	$(PY) -m serving.export --model_dir $(MODEL_WORK)/run --out $(MODEL_WORK)/export --tflite=float16 --tta=flip
	$(PY) -m serving.ship --model_dir $(MODEL_WORK)/run --export $(MODEL_WORK)/export --out models/$(MODEL) $(if $(CROSS),--cross=$(CROSS))

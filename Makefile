# Common entry points; each target is one command of the README.
PY ?= python3
SEED ?= 42
BUNDLE ?= bundle

.PHONY: install test tiny paper bench bundle clean-runs

install:
	$(PY) -m pip install torch==2.13.0 -r requirements.txt

test:
	$(PY) -m pytest -q tests

tiny:                       ## train + analyses of the tiny preset on a CPU
	bash run_seed.sh $(SEED) --preset tiny

paper:                      ## the paper run of one seed (GPU)
	bash run_seed.sh $(SEED)

bench:
	$(PY) bench.py

# A GPU session in one command: benchmark, the paper run of one seed and its analyses, and a
# compact bundle (metrics, analysis JSON, figures; never snapshots) in $(BUNDLE)/.
bundle:
	mkdir -p $(BUNDLE)
	$(PY) bench.py 2>&1 | tee $(BUNDLE)/bench.txt
	( time bash run_seed.sh $(SEED) --progress false ) 2>&1 | tee $(BUNDLE)/run_seed.log
	cp runs/seed$(SEED)/metrics.jsonl runs/seed$(SEED)/config.json runs/seed$(SEED)/training_curves.png $(BUNDLE)/
	cp runs/seed$(SEED)/analysis/*.json runs/seed$(SEED)/analysis/*.png $(BUNDLE)/ 2>/dev/null || true
	tar czf $(BUNDLE).tar.gz $(BUNDLE)

clean-runs:
	rm -rf runs

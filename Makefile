# Common entry points; each target is one command of the README.
PY ?= python3
SEED ?= 42
BUNDLE ?= bundle
EXECUTOR ?= inline

.PHONY: install test tiny paper bench results bundle clean-runs figures pdf

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

results:                    ## the whole results plan (GPU); EXECUTOR=local runs independent stages at once
	$(PY) make_results.py --executor $(EXECUTOR)

# A GPU session in one command: benchmark, the paper run of one seed and its analyses, and a
# compact bundle (metrics, analysis JSON, figures; never snapshots) in $(BUNDLE)/ and $(BUNDLE).tar.gz.
# ARGS go to bench.py and train.py (e.g. ARGS="--preset tiny" to try it on a CPU).
ARGS ?=
bundle:
	mkdir -p $(BUNDLE)
	$(PY) bench.py $(ARGS) 2>&1 | tee $(BUNDLE)/bench.txt
	( time bash run_seed.sh $(SEED) --progress false $(ARGS) ) 2>&1 | tee $(BUNDLE)/run_seed.log
	run=$$($(PY) -c 'import sys, config; print(config.parse_config(sys.argv[1:]).run_dir)' --seed $(SEED) $(ARGS)) && \
	cp $$run/metrics.jsonl $$run/config.json $$run/log.txt $$run/training_curves.png $(BUNDLE)/ && \
	cp $$run/analysis/*.json $$run/analysis/*.png $(BUNDLE)/
	tar czf $(BUNDLE).tar.gz -C $(dir $(abspath $(BUNDLE))) $(notdir $(abspath $(BUNDLE)))

clean-runs:
	rm -rf runs

# The report: figures, tables and numbers from results/ (Python only), then the PDF (TeX Live, latexmk).
figures:
	$(PY) make_paper_figures.py --results results --out paper

pdf: figures
	cd paper && latexmk -pdf -interaction=nonstopmode -halt-on-error paper.tex

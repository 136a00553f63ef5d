# The two commands that set up everything on a fresh machine:
#   make demo   runs the built-in ablation (Fashion-MNIST with noisy labels, an MLP, CPU) and prints its table
#   make test   installs what the tests need into .venv and runs them
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test data clean

$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# Debian ships the real Fashion-MNIST; elsewhere trickbag downloads the official files.
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y -q dataset-fashion-mnist >/dev/null || \
		(apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null) || true; \
	fi

demo: $(STAMP) data
	$(BIN)/trickbag ablate --config configs/fashion_mnist_demo.yaml --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache

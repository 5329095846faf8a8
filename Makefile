# Two entry points that do all the set-up on a fresh Debian/Ubuntu machine:
#   make demo   - the main job on the embedded default (ResNet-18 on Fashion-MNIST)
#   make test   - the test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
WORKSPACE ?= edgeres-runs

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	./scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,test]'  # the core, every extra (int8, OpenVINO, TFLite, QNN), the test tools
	touch $@

demo: setup
	$(BIN)/edgeres run recipes/resnet18-fashion-int8-all.yaml --workspace $(WORKSPACE)

# One worker process (-n 1): a test whose process crashes (a segfault in a runtime's native library) runs once
# more in a fresh worker; a test that fails is not rerun (--rerun-except . matches every failure).
# --durations 15: the slowest tests, to keep the suite within CI's time.
test: setup
	$(BIN)/pytest -q -n 1 --reruns 1 --rerun-except . --durations 15

clean:
	rm -rf $(WORKSPACE) .pytest_cache

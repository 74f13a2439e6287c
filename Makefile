# Two commands do all the set-up on a fresh machine:
#   make run    creates .venv if missing, installs, runs the main job (CONFIG, ARGS)
#   make test   same set-up, runs every test
PY        ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
CONFIG    ?= configs/demo.yaml
ARGS      ?=
# Exact pins for the torch/torchvision pair these machines install from local disk.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# Which torch build: empty = the default index (PyPI's torch 2.14.1 is a CUDA 13 build: NVIDIA
# driver R580 or newer). For an older driver, the CUDA 12 build of the same pins, e.g.
#   make clean install TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
# and .../whl/cpu for a CPU-only machine (README, "GPU install").
TORCH_INDEX_URL ?=
# 1: also build sam2's CUDA extension (needs nvcc); rtseg fills mask holes without it
SAM2_BUILD_CUDA ?= 0
STAMP     := $(VENV)/.rtseg-installed

.PHONY: install run test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) $(TORCH_PINS)
	# sam2's sdist builds against the installed torch; its CUDA extension only on request
	$(BIN)/python -c "import sam2" 2>/dev/null || SAM2_BUILD_CUDA=$(SAM2_BUILD_CUDA) $(BIN)/pip install -q --no-build-isolation sam2==1.1.0
	$(BIN)/pip install -q -e '.[test,cluster]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/rtseg run $(CONFIG) $(ARGS)

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest $(ARGS)

bench: $(STAMP)
	$(BIN)/rtseg bench

clean:
	rm -rf $(VENV) build *.egg-info

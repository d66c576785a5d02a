# kws: `make install` (venv + pinned deps), `make train`, `make test`, `make bench`.
PYTHON ?= python3
# The virtual environment lives outside the checkout so CI and fresh clones can reuse it.
VENV ?= $(HOME)/.venvs/kws
PY := $(VENV)/bin/python
# Reinstall when the lock, the project metadata, the C front end the install compiles
# (setup.py) or the checkout path (editable install) changes.
INSTALL_INPUTS := constraints.txt pyproject.toml setup.py firmware/micro_frontend.c firmware/micro_frontend.h firmware/default_tables/micro_frontend_tables.h firmware/host/micro_frontend_info.c
STAMP := $(VENV)/.kws-$(shell cat $(INSTALL_INPUTS) | sha1sum | cut -c1-10)-$(shell echo $(CURDIR) | sha1sum | cut -c1-10)
CONFIG ?= conf.yaml
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: install train test bench export stream-test firmware firmware-sim corpus clean

install: $(STAMP)

$(STAMP): $(INSTALL_INPUTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet 'pip==26.3'
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -m pip check
	rm -f $(VENV)/.kws-*
	touch $@

# Extra fit arguments: make train ARGS="--model.arch tiny_conv"
ARGS ?=
train: install
	$(PY) -m kws fit --config $(CONFIG) $(ARGS)

# Lint and format checks first: they take a second and fail before the slow tests.
test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

# The best checkpoint of the newest run (override: make export CKPT=path/to.ckpt).
CKPT ?= $(shell ls -t runs/csv/version_*/checkpoints/best-*.ckpt 2>/dev/null | head -n 1)
REFERENCE ?= ../shared/data/micro_speech/micro_speech_quantized.tflite

export: install
	@test -n "$(CKPT)" || { echo "no checkpoint: run 'make train' first or pass CKPT=..."; exit 2; }
	$(PY) -m kws export --ckpt "$(CKPT)" $(if $(wildcard $(REFERENCE)),--compare $(REFERENCE))

# The firmware for the Cortex-M4F (both TFLM kernel sets, the sketch's own sources) from the
# newest export (override: EXPORT=runs/csv/version_0/export_best-epoch=18), then run in QEMU and
# compared with the host, bit for bit (firmware/README.md). Needs the Arm toolchain and QEMU
# (.ci/run installs them on Debian) and a TFLM source tree (TFLM_DIR).
EXPORT ?= $(shell ls -td runs/csv/version_*/export_* 2>/dev/null | head -n 1)
TFLM_DIR ?= ../shared/third_party/tflite-micro
FIRMWARE_MAKE = $(MAKE) -C firmware MODEL_DIR="$(EXPORT)" TFLM_DIR="$(TFLM_DIR)"

# The stream test of the newest export's int8 model through tflite-micro, as the board runs it
# (keyword recall, false alarms per hour, DET curve), beside the export: <run>/stream_test_<export>/.
stream-test: install
	@test -n "$(EXPORT)" || { echo "no export: run 'make train' and 'make export' first, or pass EXPORT=..."; exit 2; }
	$(PY) -m kws stream-test --ckpt "$$($(PY) -c 'import json,sys; print(json.load(open(sys.argv[1]))["source"])' "$(EXPORT)/report.json")" --tflite "$(EXPORT)/model_int8.tflite" --runtime micro --out "$(dir $(EXPORT))stream_test_$(notdir $(EXPORT))"

firmware: install
	@test -n "$(EXPORT)" || { echo "no export: run 'make train' and 'make export' first, or pass EXPORT=..."; exit 2; }
	$(FIRMWARE_MAKE) firmware sketch-check footprint

# With LIBRARY=<export>/arduino/<name> (the Arduino library the export writes) the QEMU firmware
# is built from the library's src/ alone and run on RECORDING (firmware/arduino_library.mk).
ifeq ($(LIBRARY),)
firmware-sim: firmware
	$(PY) -m kws firmware-sim --export "$(EXPORT)" $(if $(RECORDING),--recording "$(RECORDING)")
else
firmware-sim: install
	@test -n "$(RECORDING)" || { echo "RECORDING=path/to/recording.wav is needed with LIBRARY="; exit 2; }
	$(MAKE) -C firmware library-sim LIBRARY="$(abspath $(LIBRARY))" RECORDING="$(abspath $(RECORDING))" TFLM_DIR="$(TFLM_DIR)"
endif

bench: install
	$(PY) -m kws bench

corpus: install
	$(PY) -m kws corpus data/synthetic

clean:
	rm -rf runs lightning_logs wandb .pytest_cache

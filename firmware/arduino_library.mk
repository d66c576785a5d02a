# The Arduino library of an export (`python -m kws arduino-library`, kws/export/arduino.py), built
# as the Arduino IDE builds it, and the QEMU firmware built from the library's src/ alone.
#
#   make -C firmware arduino-check    LIBRARY=<export>/arduino/<name>   the IDE's rules, every file compiled
#   make -C firmware library-firmware LIBRARY=...                       BUILD/library/<name>-<key>/<kernels>/kws_sim.elf
#   make -C firmware library-sim      LIBRARY=... RECORDING=rec.wav     run in QEMU as firmware-sim runs
#
# Included at the end of firmware/Makefile: its flags, TFLM libraries, stubs, board layer and QEMU.
# LIBRARY is taken from the repository root when relative, as MODEL_DIR is.

LIBRARY ?=
# The project's Python, for the IDE's rules (kws.export.arduino.check_library); run from the repository root.
PYTHON ?= $(HOME)/.venvs/kws/bin/python
LIB := $(if $(LIBRARY),$(call from_root,$(LIBRARY)))
LIB_SRC := $(LIB)/src
# One build folder per library path: two libraries never share objects.
LIB_BUILD := $(BUILD)/library/$(notdir $(LIB))-$(shell echo '$(LIB)' | md5sum | cut -c1-8)
# What the IDE compiles of a library: every .c/.cpp/.S under src/, recursively (1.5 layout).
LIB_SOURCES := $(if $(LIB),$(shell cd $(LIB_SRC) 2>/dev/null && find . -name '*.c' -o -name '*.cpp' -o -name '*.S' \
  | sed 's|^\./||' | sort))
LIB_EXAMPLES := $(if $(LIB),$(patsubst $(LIB)/examples/%,%,$(wildcard $(LIB)/examples/*/*.ino)))

.PHONY: arduino-check library-firmware library-sim library-dir

library-dir:
	@test -n "$(LIBRARY)" && test -f $(LIB)/library.properties && test -d $(LIB_SRC) || { \
	  echo "LIBRARY=$(LIBRARY): need a library folder written by 'python -m kws arduino-library --export DIR'"; \
	  echo "(library.properties, src/), e.g. LIBRARY=<export>/arduino/kws_yes_no_inferencing"; \
	  exit 2; }

# What the objects were built with: rebuilt when the library path, TFLM tree or flags change.
$(LIB_BUILD)/flags: FORCE
	@mkdir -p $(@D) && echo '$(LIB) $(TFLM) $(subst ',,$(COMMON) $(CXX_ONLY) $(LDFLAGS))' > $@.new
	@cmp -s $@.new $@ && rm $@.new || mv $@.new $@

# ---------------------------------------------------------------- arduino-check (compile only)
# The IDE's rules the compiler cannot see (kws.export.arduino.check_library: name, layout, sketch
# naming, colliding file names, includes), then every library source for the Cortex-M4F against
# the CMSIS-NN tree with the stand-ins of targets/arduino_stubs, src/ alone on the include path;
# each example's .ino as C++ with Arduino.h included first, its own folder on the path too.
LIB_CHECK := $(LIB_BUILD)/arduino-check
LIB_CHECK_FLAGS := $(COMMON) -Wall -Wextra -I$(LIB_SRC) -I$(STUBS) $(call tflm_defines,cmsis-nn) \
  $(call tflm_includes,cmsis-nn)
LIB_CHECK_OBJS := $(patsubst %,$(LIB_CHECK)/src/%.o,$(LIB_SOURCES)) \
  $(patsubst %,$(LIB_CHECK)/examples/%.o,$(LIB_EXAMPLES))

arduino-check: library-dir arduino-rules $(LIB_CHECK_OBJS)
	@echo "arduino-check: $(words $(LIB_CHECK_OBJS)) files of $(LIB) compiled for cortex-m4f (cmsis-nn)"

.PHONY: arduino-rules
arduino-rules: | library-dir
	$(Q)cd $(ROOT) && $(PYTHON) -m kws arduino-library --check $(LIB)
$(LIB_CHECK)/src/%.cpp.o: $(LIB_SRC)/%.cpp $(LIB_BUILD)/flags | arduino-rules toolchain tflm-tree
	@mkdir -p $(@D) && echo "CXX arduino-check/$*.cpp"
	$(Q)$(CXX) $(LIB_CHECK_FLAGS) $(CXX_ONLY) -c $< -o $@
$(LIB_CHECK)/src/%.c.o: $(LIB_SRC)/%.c $(LIB_BUILD)/flags | arduino-rules toolchain
	@mkdir -p $(@D) && echo "CC  arduino-check/$*.c"
	$(Q)$(CC) $(LIB_CHECK_FLAGS) -std=c99 -c $< -o $@
$(LIB_CHECK)/src/%.S.o: $(LIB_SRC)/%.S $(LIB_BUILD)/flags | arduino-rules toolchain
	@mkdir -p $(@D) && echo "AS  arduino-check/$*.S"
	$(Q)$(CC) $(LIB_CHECK_FLAGS) -c $< -o $@
$(LIB_CHECK)/examples/%.ino.o: $(LIB)/examples/%.ino $(LIB_BUILD)/flags | arduino-rules toolchain tflm-tree
	@mkdir -p $(@D) && echo "CXX arduino-check/examples/$*.ino"
	$(Q)$(CXX) $(LIB_CHECK_FLAGS) -I$(<D) $(CXX_ONLY) -x c++ -include Arduino.h -c $< -o $@

# -------------------------------------------------------- the QEMU firmware from the library
# firmware's build with <library>/src in place of the staged sketch (MODEL_DIR + firmware/):
# every source of src/ but the Arduino-only command_responder.cpp (main.cpp of targets/qemu
# replaces it and the .ino), linked in firmware's order (APP_SOURCES) so that the same sources
# give the same image, then any other source of src/.
LIB_ARDUINO_ONLY := command_responder.cpp
LIB_FRONTEND = $(if $(shell grep -s '^\#define KWS_FRONTEND_MFCC' $(LIB_SRC)/model_settings.h),mfcc,micro)
LIB_ORDER = $(patsubst %_frontend.c,$(LIB_FRONTEND)_frontend.c,$(APP_SOURCES))
LIB_APP = $(filter $(LIB_SOURCES),$(LIB_ORDER)) $(filter-out $(LIB_ORDER) $(LIB_ARDUINO_ONLY),$(LIB_SOURCES))
LIB_APP_CFLAGS := -Wall -Wextra -I$(LIB_SRC) -I$(QEMU_DIR)
lib_elf = $(LIB_BUILD)/$(1)/kws_sim.elf
lib_objs = $(patsubst %,$(LIB_BUILD)/$(1)/src/%.o,$(LIB_APP)) $(patsubst %,$(LIB_BUILD)/$(1)/qemu/%.o,$(BOARD_SOURCES))

define library_kernel_rules
$(LIB_BUILD)/$(1)/src/%.cpp.o: $(LIB_SRC)/%.cpp $(LIB_BUILD)/flags | library-dir toolchain tflm-tree
	@mkdir -p $$(@D) && echo "CXX library/$(1)/$$*.cpp"
	$(Q)$(CXX) $(COMMON) $(CXX_ONLY) $(LIB_APP_CFLAGS) $(call tflm_defines,$(1)) $(call tflm_includes,$(1)) -c $$< -o $$@
$(LIB_BUILD)/$(1)/src/%.c.o: $(LIB_SRC)/%.c $(LIB_BUILD)/flags | library-dir toolchain
	@mkdir -p $$(@D) && echo "CC  library/$(1)/$$*.c"
	$(Q)$(CC) $(COMMON) -std=c99 $(LIB_APP_CFLAGS) -c $$< -o $$@
$(LIB_BUILD)/$(1)/qemu/%.cpp.o: $(QEMU_DIR)/%.cpp $(LIB_BUILD)/flags | library-dir toolchain tflm-tree
	@mkdir -p $$(@D) && echo "CXX library/$(1)/$$(<F)"
	$(Q)$(CXX) $(COMMON) $(CXX_ONLY) $(LIB_APP_CFLAGS) $(call tflm_defines,$(1)) $(call tflm_includes,$(1)) -c $$< -o $$@
$(LIB_BUILD)/$(1)/qemu/%.c.o: $(QEMU_DIR)/%.c $(LIB_BUILD)/flags | library-dir toolchain
	@mkdir -p $$(@D) && echo "CC  library/$(1)/$$(<F)"
	$(Q)$(CC) $(COMMON) -std=c11 $(LIB_APP_CFLAGS) -c $$< -o $$@
$(call lib_elf,$(1)): $(call lib_objs,$(1)) $(call tflm_lib,$(1)) $(QEMU_DIR)/mps2_an386.ld
	@echo "LD  $$@"
	$(Q)$(CXX) $(LDFLAGS) -Wl,-Map=$(LIB_BUILD)/$(1)/kws_sim.map -o $$@ $(call lib_objs,$(1)) $(call tflm_lib,$(1)) -lm
	$(Q)$(SIZE) $$@
endef
$(if $(LIB),$(foreach k,$(ALL_KERNELS),$(eval $(call library_kernel_rules,$(k)))))

library-firmware: library-dir $(foreach k,$(KERNELS),$(call lib_elf,$(k)))

LIB_QEMU_RUN = timeout $(SIM_TIMEOUT) $(QEMU) -M mps2-an386 -nographic -monitor none -serial none \
  -semihosting-config enable=on,target=native,$(subst $(space),$(comma),$(addprefix arg=,$(2))) \
  -kernel $(call lib_elf,$(1))

# As firmware-sim: BUILD/library/<name>-<key>/<kernels>/sim/<recording>/inferences.txt, detections.txt, log.txt.
library-sim: library-firmware
	@test -n "$(RECORDING)" && test -f "$(call from_root,$(RECORDING))" || { \
	  echo "RECORDING=path/to/recording.wav (16 kHz mono int16 WAV or raw) not found"; exit 2; }
	@set -e; for k in $(KERNELS); do \
	  out=$(LIB_BUILD)/$$k/sim/$(basename $(notdir $(RECORDING))); mkdir -p $$out; \
	  echo "== $$k (library $(notdir $(LIB))): $(RECORDING) -> $$out"; \
	  $(call LIB_QEMU_RUN,$$k,kws_sim stream $(call from_root,$(RECORDING)) $$out) | tee $$out/log.txt; \
	  rc=$${PIPESTATUS[0]}; test $$rc -eq 0 || { \
	    echo "$$k: kws_sim failed (exit $$rc; 124: timed out after SIM_TIMEOUT=$(SIM_TIMEOUT) s)"; exit 1; }; \
	done
library-sim: SHELL := /bin/bash

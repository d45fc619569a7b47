# SPDX-License-Identifier: Apache-2.0
# memctl - GNU make. `make help` lists the targets.

CUDA_HOME ?= /usr/local/cuda
CC ?= gcc
NVCC ?= $(CUDA_HOME)/bin/nvcc
PREFIX ?= /usr/local
BUILD := build

WARN := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wshadow \
        -Wpointer-arith -Wcast-qual
ifeq ($(WERROR),1)
WARN += -Werror
endif
CFLAGS ?= -O2 -g
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -fstack-protector-strong -fPIC \
        -MMD -MP -Iinclude -Iregion -Ipreload -Ictl -I$(CUDA_HOME)/include
LIB_CFLAGS := $(BASE_CFLAGS) -fvisibility=hidden
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

REGION_SRC := region/region.c region/request.c region/stage.c region/hostmem.c region/tags.c
PRELOAD_SRC := preload/interpose.c preload/drv_cuda.c preload/options.c preload/log.c
CTL_LIB_SRC := ctl/server.c ctl/proto.c
LIB_SRC := $(REGION_SRC) $(PRELOAD_SRC) $(CTL_LIB_SRC)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
SAN_OBJ := $(LIB_SRC:%.c=$(BUILD)/san/%.o)
CLI_SRC := ctl/cli.c ctl/proto.c preload/options.c region/tags.c preload/log.c
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/cli/%.o)

LIB := $(BUILD)/libmemctl.so
CLI := $(BUILD)/memctl
FAKE_CUDA := $(BUILD)/fake/libcuda.so.1
FAKE_CUDART := $(BUILD)/fake/libcudart.so.13

UNIT_TESTS := $(patsubst test/unit/%.c,$(BUILD)/test/%,$(wildcard test/unit/test_*.c))
UNIT_SAN := $(UNIT_TESTS:%=%-san)
E2E_TESTS := $(patsubst test/e2e/%.c,$(BUILD)/test/%,$(wildcard test/e2e/test_*.c))
E2E_PROGS := $(patsubst test/e2e/%.c,$(BUILD)/test/%,$(wildcard test/e2e/prog_*.c))
CRITERION := -lcriterion

# What every test run sees: the simulated driver, private state, private
# socket directory.
TEST_ENV = LD_LIBRARY_PATH=$(CURDIR)/$(BUILD)/fake \
           FAKECUDA_STATE=$(CURDIR)/$(BUILD)/test/fakecuda.state \
           MEMCTL_RUNTIME_DIR=$(CURDIR)/$(BUILD)/test/run \
           MEMCTL_BUILD=$(CURDIR)/$(BUILD)

.PHONY: all lib cli fake test test-suites test-unit test-e2e test-python test-gpu gpu-build bench demo check \
        install clean help fuzz
.DEFAULT_GOAL := all
# Keep the sanitizer objects between runs (they are intermediates of the
# -san suites, which make would otherwise delete).
.SECONDARY:

all: $(LIB) $(CLI) $(FAKE_CUDA) $(FAKE_CUDART) ## build the library, the CLI and the simulated driver

lib: $(LIB)
cli: $(CLI)
fake: $(FAKE_CUDA) $(FAKE_CUDART)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/san/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) $(CFLAGS) $(SAN_FLAGS) -c $< -o $@

$(BUILD)/cli/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ) preload/memctl.map
	$(CC) -shared -o $@ $(LIB_OBJ) -Wl,--version-script=preload/memctl.map \
	    -Wl,-z,defs -Wl,--as-needed -ldl -lpthread

$(CLI): $(CLI_OBJ)
	$(CC) -o $@ $(CLI_OBJ) -lpthread

$(BUILD)/fake/fakecuda.o: test/fake/fakecuda.c test/fake/fakecuda.h
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) $(CFLAGS) -Itest/fake -c $< -o $@

$(FAKE_CUDA): $(BUILD)/fake/fakecuda.o
	$(CC) -shared -o $@ $< -Wl,-soname,libcuda.so.1 -lpthread
	ln -sf libcuda.so.1 $(BUILD)/fake/libcuda.so

$(FAKE_CUDART): test/fake/fakecudart.c test/fake/cudart.map $(FAKE_CUDA)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -shared -o $@ $< \
	    -Wl,-soname,libcudart.so.13 -Wl,--version-script=test/fake/cudart.map \
	    -L$(BUILD)/fake -l:libcuda.so.1
	ln -sf libcudart.so.13 $(BUILD)/fake/libcudart.so

# Unit suites link the real objects and the simulated driver.
$(BUILD)/test/test_%: test/unit/test_%.c $(LIB_OBJ) $(FAKE_CUDA)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -Itest/fake -o $@ $< $(LIB_OBJ) \
	    -L$(BUILD)/fake -l:libcuda.so.1 $(CRITERION) -ldl -lpthread

$(BUILD)/test/test_%-san: test/unit/test_%.c $(SAN_OBJ) $(FAKE_CUDA)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(SAN_FLAGS) -Itest/fake -o $@ $< $(SAN_OBJ) \
	    -L$(BUILD)/fake -l:libcuda.so.1 $(CRITERION) -ldl -lpthread

# End-to-end programs link only the simulated runtime, like an application;
# libmemctl.so comes in through LD_PRELOAD.
$(BUILD)/test/test_e2e_%: test/e2e/test_e2e_%.c test/e2e/e2e.h test/e2e/e2e_suite.h $(FAKE_CUDART)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -Itest/fake -o $@ $< \
	    -L$(BUILD)/fake -l:libcudart.so.13 -l:libcuda.so.1 $(CRITERION) -ldl -lpthread

$(BUILD)/test/prog_%: test/e2e/prog_%.c test/e2e/e2e.h $(FAKE_CUDART)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -Itest/fake -o $@ $< \
	    -L$(BUILD)/fake -l:libcudart.so.13 -l:libcuda.so.1 -ldl -lpthread

test: all ## run every suite on the simulated driver (no GPU needed)
	@mkdir -p $(BUILD)/test
	@{ $(MAKE) --no-print-directory test-suites; echo $$? > $(BUILD)/test/status; } 2>&1 | \
	    tee $(BUILD)/test/all.log
	@st=$$(cat $(BUILD)/test/status); sh test/summary.sh $(BUILD)/test/all.log $$st; exit $$st

test-suites: all check test-unit test-e2e test-python demo

test-python: all
	@echo "== test/python/test_memctl.py"
	@rm -f $(BUILD)/test/fakecuda.state
	@$(TEST_ENV) MEMCTL_SOCKET=0 LD_PRELOAD=$(CURDIR)/$(LIB) python3 test/python/test_memctl.py

test-unit: $(UNIT_TESTS) $(UNIT_SAN)
	@mkdir -p $(BUILD)/test/run
	@set -e; for t in $(UNIT_TESTS) $(UNIT_SAN); do \
	    echo "== $$t"; rm -f $(BUILD)/test/fakecuda.state; \
	    $(TEST_ENV) ASAN_OPTIONS=detect_leaks=1:handle_segv=0 $$t --jobs 1; done

test-e2e: all $(E2E_TESTS) $(E2E_PROGS)
	@mkdir -p $(BUILD)/test/run
	@set -e; for t in $(E2E_TESTS); do \
	    echo "== $$t"; rm -f $(BUILD)/test/fakecuda.state; \
	    $(TEST_ENV) LD_PRELOAD=$(CURDIR)/$(LIB) $$t --jobs 1; done

FUZZ_SECONDS ?= 600
FUZZ := $(BUILD)/fuzz/fuzz_proto
$(FUZZ): test/fuzz/fuzz_proto.c ctl/proto.c region/tags.c ctl/proto.h
	@mkdir -p $(@D)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
	    -Iinclude -Iregion -Ictl -o $@ test/fuzz/fuzz_proto.c ctl/proto.c region/tags.c

fuzz: $(FUZZ) ## fuzz the request parser for FUZZ_SECONDS (default 600; needs clang)
	@mkdir -p $(BUILD)/fuzz/corpus
	$(FUZZ) -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -print_final_stats=1 \
	    $(BUILD)/fuzz/corpus test/fuzz/corpus

# ---- GPU: the same suites against the real runtime and driver ----------
GPU := $(BUILD)/gpu
NVCC_FLAGS := -O2 -std=c++17 -arch=sm_90 -cudart shared -Iinclude -Itest/gpu -Itest/e2e
CUDA_LIB := $(CUDA_HOME)/lib64

$(GPU)/test_e2e_api: test/e2e/test_e2e_api.c test/e2e/e2e.h test/e2e/e2e_suite.h
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< -L$(CUDA_LIB) -lcudart $(CRITERION) -ldl -lpthread

$(GPU)/prog_tenant: test/e2e/prog_tenant.c test/e2e/e2e.h
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< -L$(CUDA_LIB) -lcudart -ldl

$(GPU)/gpu_roundtrip: test/gpu/gpu_roundtrip.cu test/gpu/pattern.cuh include/memctl.h
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< -ldl

$(GPU)/bench: bench/bench.cu test/gpu/pattern.cuh test/e2e/e2e.h include/memctl.h
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< -ldl

# Criterion's shared libraries travel with the GPU binaries (GPU machines
# often lack it); glibc's own libraries and the CUDA runtime do not.
$(GPU)/lib/.stamp: $(GPU)/test_e2e_api
	@mkdir -p $(@D)
	ldd $< | awk '/=>/{print $$3}' | \
	    grep -v -E '/(libc|libdl|libpthread|libm|librt|libresolv|ld-linux[^/]*|libcudart)\.so' | \
	    xargs -r -I{} cp -L {} $(@D)/
	touch $@

gpu-build: all $(GPU)/test_e2e_api $(GPU)/prog_tenant $(GPU)/gpu_roundtrip $(GPU)/bench $(GPU)/lib/.stamp ## build the GPU suites and benchmarks (needs nvcc)

test-gpu: gpu-build ## run the suites on a real GPU (API suite, CUDA roundtrip, CLI, PyTorch)
	sh test/gpu/run.sh $(BUILD)

bench: ## benchmarks against the measured hardware limits (GPU; says so and exits 0 without one)
	@if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then \
	    echo "bench: no NVIDIA GPU on this machine; nothing measured"; exit 0; fi; \
	$(MAKE) --no-print-directory $(LIB) $(GPU)/bench && \
	LD_PRELOAD=$(CURDIR)/$(LIB) $(GPU)/bench $(BENCH_ARGS)

demo: all $(BUILD)/test/prog_tenant ## the main job: a workload paused and resumed by the memctl CLI (GPU if present, else simulated)
	@sh test/demo/demo.sh $(BUILD)

check: $(LIB) ## exports, DT_NEEDED and constructors of libmemctl.so
	@sh test/check-lib.sh $(LIB)

# Where `import memctl` finds the helper: python3's own site-packages.
PYTHON_SITE ?= $(shell python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)

install: $(LIB) $(CLI) ## install library, CLI, header, man page and the Python helper (DESTDIR, PREFIX, PYTHON_SITE honoured)
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bin \
	    $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libmemctl.so
	install -m 0755 $(CLI) $(DESTDIR)$(PREFIX)/bin/memctl
	install -m 0644 include/memctl.h $(DESTDIR)$(PREFIX)/include/memctl.h
	install -m 0644 docs/memctl.1 $(DESTDIR)$(PREFIX)/share/man/man1/memctl.1
	@if [ -n "$(PYTHON_SITE)" ]; then \
	    install -d $(DESTDIR)$(PYTHON_SITE)/memctl && \
	    install -m 0644 python/memctl/__init__.py $(DESTDIR)$(PYTHON_SITE)/memctl/__init__.py && \
	    echo "python helper: $(PYTHON_SITE)/memctl"; \
	else echo "python3 not found: Python helper not installed"; fi

clean: ## remove build/
	rm -rf $(BUILD)

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

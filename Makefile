# SPDX-License-Identifier: Apache-2.0
# memctl - GNU make. `make help` lists the targets.

MAKEFILE := $(lastword $(MAKEFILE_LIST))
CUDA_HOME ?= /usr/local/cuda
ifeq ($(origin CC),default)
CC := gcc
endif
NVCC ?= $(CUDA_HOME)/bin/nvcc
PYTHON ?= python3
PREFIX ?= /usr/local
BUILD := build

# Warnings are errors in CI (CI is set there, as GitHub Actions sets it) or
# with WERROR=1; not on a newcomer's machine, whose newer compiler may warn
# about something new.
WERROR ?= $(if $(CI),1,0)
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

REGION_SRC := region/region.c region/request.c region/stage.c region/hostmem.c region/tags.c \
        region/app.c region/untagged.c region/slab.c
PRELOAD_SRC := preload/interpose.c preload/drv_cuda.c preload/options.c preload/log.c \
        preload/proc.c preload/cumem.c preload/dlsym.c preload/vmm.c preload/gate.c \
        preload/gated.c preload/drain.c preload/gating.c
CTL_LIB_SRC := ctl/server.c ctl/worker.c ctl/reply.c ctl/proto.c ctl/sockdir.c
LIB_SRC := $(REGION_SRC) $(PRELOAD_SRC) $(CTL_LIB_SRC)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
SAN_OBJ := $(LIB_SRC:%.c=$(BUILD)/san/%.o)
# Unit suites link the objects into their own executable: without the dlsym
# hook, which would serve the sanitizer runtime before it is initialised.
UNIT_OBJ := $(filter-out %/preload/dlsym.o,$(LIB_OBJ))
UNIT_SAN_OBJ := $(filter-out %/preload/dlsym.o,$(SAN_OBJ))
CLI_SRC := ctl/cli.c ctl/cli_print.c ctl/cli_group.c ctl/fanout.c ctl/fanout_talk.c ctl/serve.c \
        ctl/serve_http.c ctl/serve_ops.c ctl/metrics.c ctl/proto.c ctl/sockdir.c region/tags.c
# The CLI reads replies with jansson (Debian: libjansson-dev) and serves
# HTTP with libmicrohttpd (memctl serve); the preloaded library stays on
# libc, libdl and pthread.
CLI_LIBS := -lmicrohttpd -ljansson -lpthread
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/cli/%.o)

LIB := $(BUILD)/libmemctl.so
CLI := $(BUILD)/memctl
FAKE_CUDA := $(BUILD)/fake/libcuda.so.1
FAKE_CUDART := $(BUILD)/fake/libcudart.so.13

E2E_PROGS := $(patsubst test/e2e/%.c,$(BUILD)/test/%,$(wildcard test/e2e/prog_*.c)) \
             $(BUILD)/test/prog_drv_link
CRITERION := -lcriterion

# What every test run sees: the simulated driver, private state, private
# socket directory.
TEST_ENV = LD_LIBRARY_PATH=$(CURDIR)/$(BUILD)/fake \
           FAKECUDA_STATE=$(CURDIR)/$(BUILD)/test/fakecuda.state \
           MEMCTL_RUNTIME_DIR=$(CURDIR)/$(BUILD)/test/run \
           MEMCTL_BUILD=$(CURDIR)/$(BUILD)

.PHONY: all lib cli fake deps deps-demo deps-check test test-suites test-unit test-e2e \
        test-python test-gpu gpu-build bench bench-tms bench-torch demo check install \
        install-tms-compat clean help fuzz
.DEFAULT_GOAL := all
# Keep the sanitizer objects between runs (they are intermediates of the
# -san suites, which make would otherwise delete).
.SECONDARY:

all: $(LIB) $(CLI) $(FAKE_CUDA) $(FAKE_CUDART) ## build the library, the CLI and the simulated driver

# ---- dependencies: mk/deps.sh has one line per dependency ----------------
# `make demo` and `make test` install what they lack (apt-get, as root or
# through sudo -n; DEPS_INSTALL=0 only checks); every compile checks first,
# so a missing header is named, not met as a compiler error.
DEPS_INSTALL ?= 1
DEPS = CC='$(CC)' CUDA_HOME='$(CUDA_HOME)' sh mk/deps.sh
DEPS_FOR = $(DEPS) $(if $(filter 1,$(DEPS_INSTALL)),--install)

deps: ## install what make test needs and this machine lacks (apt-get)
	@$(DEPS) --install test
deps-demo: ## install what make demo needs and this machine lacks
	@$(DEPS) --install demo
deps-check:
	@$(if $(DEPS_CHECKED),:,$(DEPS) --quiet demo)

lib: $(LIB)
cli: $(CLI)
fake: $(FAKE_CUDA) $(FAKE_CUDART)

$(BUILD)/obj/%.o: %.c | deps-check
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/san/%.o: %.c | deps-check
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) $(CFLAGS) $(SAN_FLAGS) -c $< -o $@

$(BUILD)/cli/%.o: %.c | deps-check
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ) preload/memctl.map
	$(CC) -shared -o $@ $(LIB_OBJ) -Wl,--version-script=preload/memctl.map \
	    -Wl,-z,defs -Wl,--as-needed -ldl -lpthread

$(CLI): $(CLI_OBJ)
	$(CC) -o $@ $(CLI_OBJ) $(CLI_LIBS)

# The simulated driver: every test/fake/*.c but the runtime.
FAKE_SRC := $(filter-out test/fake/fakecudart.c,$(wildcard test/fake/*.c))
FAKE_OBJ := $(FAKE_SRC:test/fake/%.c=$(BUILD)/fake/%.o)

$(BUILD)/fake/%.o: test/fake/%.c | deps-check
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) $(CFLAGS) -Itest/fake -c $< -o $@

# -Bsymbolic-functions: like the real driver, cuGetProcAddress hands out
# the driver's own functions, never an LD_PRELOAD'ed library's.
$(FAKE_CUDA): $(FAKE_OBJ)
	$(CC) -shared -o $@ $(FAKE_OBJ) -Wl,-soname,libcuda.so.1 -Wl,-Bsymbolic-functions -lpthread
	ln -sf libcuda.so.1 $(BUILD)/fake/libcuda.so

$(FAKE_CUDART): test/fake/fakecudart.c test/fake/cudart.map $(FAKE_CUDA)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -shared -o $@ $< \
	    -Wl,-soname,libcudart.so.13 -Wl,--version-script=test/fake/cudart.map \
	    -L$(BUILD)/fake -l:libcuda.so.1
	ln -sf libcudart.so.13 $(BUILD)/fake/libcudart.so

# Unit suites link the real objects and the simulated driver. The registry
# suites wrap malloc and calloc, to fail the registry's own allocations
# (test/unit/failalloc.h), test_region free too, to stop a thread inside
# one, test_slab realloc too (its list of slabs); the server suite wraps
# free, to stop its socket thread inside one.
$(BUILD)/test/test_region $(BUILD)/test/test_region-san: \
	UNIT_LDFLAGS := -Wl,--wrap=malloc -Wl,--wrap=calloc -Wl,--wrap=free
$(BUILD)/test/test_region_app $(BUILD)/test/test_region_app-san: \
	UNIT_LDFLAGS := -Wl,--wrap=malloc -Wl,--wrap=calloc
$(BUILD)/test/test_slab $(BUILD)/test/test_slab-san: \
	UNIT_LDFLAGS := -Wl,--wrap=malloc -Wl,--wrap=calloc -Wl,--wrap=realloc
$(BUILD)/test/test_server $(BUILD)/test/test_server-san: UNIT_LDFLAGS := -Wl,--wrap=free
$(BUILD)/test/test_%: test/unit/test_%.c $(UNIT_OBJ) $(FAKE_CUDA)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -Itest/fake -o $@ $< $(UNIT_OBJ) $(UNIT_LDFLAGS) \
	    -L$(BUILD)/fake -l:libcuda.so.1 $(CRITERION) -ldl -lpthread

$(BUILD)/test/test_%-san: test/unit/test_%.c $(UNIT_SAN_OBJ) $(FAKE_CUDA)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(SAN_FLAGS) -Itest/fake -o $@ $< $(UNIT_SAN_OBJ) \
	    $(UNIT_LDFLAGS) -L$(BUILD)/fake -l:libcuda.so.1 $(CRITERION) -ldl -lpthread

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

# The driver layer's tenant: once reaching the driver only through dlopen
# and cuGetProcAddress, as a statically linked runtime does (no CUDA
# library linked), once linked against libcuda and calling it directly.
$(BUILD)/test/prog_drv: test/e2e/prog_drv.c test/e2e/e2e.h
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< -ldl

$(BUILD)/test/prog_drv_link: test/e2e/prog_drv.c test/e2e/e2e.h $(FAKE_CUDA)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -DPROG_DRV_LINKED -o $@ $< \
	    -L$(BUILD)/fake -l:libcuda.so.1 -ldl

# The dlsym hook forwards with a tail call, which glibc's caller-relative
# lookups (RTLD_NEXT) need: optimised whatever CFLAGS say.
$(BUILD)/obj/preload/dlsym.o: preload/dlsym.c
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) $(CFLAGS) -O2 -foptimize-sibling-calls -c $< -o $@

# ---- make test: every suite runs and leaves its result -------------------
# A suite is a name in SUITES and a rule that makes $(RES)/NAME through
# $(RUN_SUITE) (test/suite.sh: output to the terminal and $(RES)/NAME.log,
# counts to $(RES)/NAME). A failing suite stops none of the others, and
# test/summary.sh closes with one line naming what failed and what did not
# run. Adding one takes two lines, e.g.
#     SUITES += http
#     $(RES)/http: all ; @$(RUN_SUITE) sh test/http/run.sh $(BUILD)
RES := $(BUILD)/test/result
UNIT_SUITES := $(patsubst test/unit/test_%.c,%,$(wildcard test/unit/test_*.c))
E2E_SUITES := $(patsubst test/e2e/test_%.c,%,$(wildcard test/e2e/test_*.c))
SUITES := check $(UNIT_SUITES) $(UNIT_SUITES:%=%-san) $(E2E_SUITES) python tms install demo
RUN_SUITE = sh test/suite.sh $(RES) $(@F)
# memctl serve: curl against tenants, promtool on the metrics.
SUITES += http
$(RES)/http: all $(BUILD)/test/prog_tenant ; @$(RUN_SUITE) $(PYTHON) test/http/test_http.py $(BUILD)
# make bench's picture, drawn from a sample of its output.
SUITES += benchplot
$(RES)/benchplot: ; @$(RUN_SUITE) $(PYTHON) test/bench/test_plot.py

test: ## run every suite on the simulated driver, no GPU needed (SUITES='e2e_ctl python' runs some)
	@$(DEPS_FOR) test
	@rm -rf $(RES) && mkdir -p $(RES) $(BUILD)/test/run
	@$(MAKE) --no-print-directory DEPS_CHECKED=1 all || echo "0 1 did not build" >$(RES)/build
	@[ -f $(RES)/build ] || \
	    $(MAKE) --no-print-directory -k DEPS_CHECKED=1 TEST_SERIAL=1 test-suites || :
	@sh test/summary.sh $(RES) $(SUITES)

test-suites: $(SUITES:%=$(RES)/%)
test-unit: ; @$(MAKE) --no-print-directory test SUITES='$(UNIT_SUITES) $(UNIT_SUITES:%=%-san)'
test-e2e: ; @$(MAKE) --no-print-directory test SUITES='$(E2E_SUITES)'
test-python: ; @$(MAKE) --no-print-directory test SUITES='python tms'

# Suites share the simulated device and the socket directory: one at a time.
ifeq ($(TEST_SERIAL),1)
.NOTPARALLEL:
endif

$(RES)/check: $(LIB)
	@$(RUN_SUITE) sh test/check-lib.sh $(LIB)

# Unit suites, plain and -san: the real objects on the simulated driver.
$(RES)/%: $(BUILD)/test/test_%
	@rm -f $(BUILD)/test/fakecuda.state
	@$(RUN_SUITE) env $(TEST_ENV) ASAN_OPTIONS=detect_leaks=1:handle_segv=0 $< --jobs 1

# End-to-end suites: programs under LD_PRELOAD=libmemctl.so.
$(RES)/e2e_%: $(BUILD)/test/test_e2e_% $(LIB) $(E2E_PROGS)
	@rm -f $(BUILD)/test/fakecuda.state
	@$(RUN_SUITE) env $(TEST_ENV) LD_PRELOAD=$(CURDIR)/$(LIB) $< --jobs 1

$(RES)/python: $(LIB) $(FAKE_CUDART)
	@rm -f $(BUILD)/test/fakecuda.state
	@$(RUN_SUITE) env $(TEST_ENV) MEMCTL_SOCKET=0 LD_PRELOAD=$(CURDIR)/$(LIB) \
	    $(PYTHON) test/python/test_memctl.py

# torch_memory_saver's API on memctl (python/memctl/tms.py).
$(RES)/tms: $(LIB) $(CLI) $(FAKE_CUDART)
	@rm -f $(BUILD)/test/fakecuda.state
	@$(RUN_SUITE) env $(TEST_ENV) MEMCTL_SOCKET=0 LD_PRELOAD=$(CURDIR)/$(LIB) \
	    $(PYTHON) test/python/test_tms.py

$(RES)/install: $(LIB) $(CLI)
	@$(RUN_SUITE) sh test/install.sh $(CURDIR)/$(BUILD)/test/destdir $(MAKE)

$(RES)/demo: all $(BUILD)/test/prog_tenant
	@$(RUN_SUITE) sh test/demo/demo.sh $(BUILD)

FUZZ_SECONDS ?= 600
FUZZ := $(BUILD)/fuzz/fuzz_proto
$(FUZZ): test/fuzz/fuzz_proto.c ctl/proto.c region/tags.c ctl/proto.h region/region.h
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

# The driver layer on a GPU: the tenant finding the driver only by lookup
# (it links nothing, so the simulated driver's build would do; built here
# for a self-contained build/gpu), the tenant linked against the driver,
# and prog_tenant with the runtime linked statically (nvcc's default).
$(GPU)/prog_drv: test/e2e/prog_drv.c test/e2e/e2e.h
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< -ldl

$(GPU)/prog_drv_link: test/e2e/prog_drv.c test/e2e/e2e.h
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -DPROG_DRV_LINKED -o $@ $< -L$(CUDA_LIB)/stubs -lcuda -ldl

$(GPU)/prog_tenant_static: test/e2e/prog_tenant.c test/e2e/e2e.h include/memctl.h
	@mkdir -p $(@D)
	$(NVCC) -O2 -cudart static -D_GNU_SOURCE -Iinclude -Itest/e2e -o $@ $< -ldl

$(GPU)/gpu_roundtrip: test/gpu/gpu_roundtrip.cu test/gpu/pattern.cuh include/memctl.h
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< -ldl

$(GPU)/bench: bench/bench.cu test/gpu/pattern.cuh test/e2e/e2e.h include/memctl.h
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) -o $@ $< -ldl

# The questions on which the simulated driver chose to be strict, asked of
# the real driver (the same program runs on the simulated one in make test).
# What a staged pause is made of, each part alone on the driver (no memctl).
$(GPU)/stagecost: bench/stagecost.cu
	@mkdir -p $(@D)
	$(NVCC) -O2 -std=c++17 -o $@ $< -lcuda -lpthread

$(GPU)/prog_driver_rules: test/e2e/prog_driver_rules.c
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< -L$(CUDA_LIB)/stubs -lcuda -lpthread

# Criterion's shared libraries travel with the GPU binaries (GPU machines
# often lack it); glibc's own libraries and the CUDA runtime do not.
$(GPU)/lib/.stamp: $(GPU)/test_e2e_api
	@mkdir -p $(@D)
	ldd $< | awk '/=>/{print $$3}' | \
	    grep -v -E '/(libc|libdl|libpthread|libm|librt|libresolv|ld-linux[^/]*|libcudart)\.so' | \
	    xargs -r -I{} cp -L {} $(@D)/
	touch $@

# The CLI's libraries (jansson, libmicrohttpd and what they need) travel
# too; test/gpu/run.sh puts on the path only those the GPU machine lacks.
$(GPU)/cli-lib/.stamp: $(CLI)
	@mkdir -p $(@D)
	ldd $< | awk '/=>/{print $$3}' | \
	    grep -v -E '/(libc|libdl|libpthread|libm|librt|libresolv|ld-linux[^/]*)\.so' | \
	    xargs -r -I{} cp -L {} $(@D)/
	touch $@

GPU_BIN := $(GPU)/test_e2e_api $(GPU)/prog_tenant $(GPU)/prog_drv $(GPU)/prog_drv_link \
           $(GPU)/prog_tenant_static $(GPU)/prog_driver_rules $(GPU)/gpu_roundtrip \
           $(GPU)/bench $(GPU)/stagecost $(GPU)/lib/.stamp $(GPU)/cli-lib/.stamp
gpu-build: all $(GPU_BIN) ## build the GPU suites and benchmarks (needs nvcc)

test-gpu: gpu-build ## run the suites on a real GPU (API suite, CUDA roundtrip, CLI, PyTorch)
	sh test/gpu/run.sh $(BUILD)

# Its output goes to build/bench.txt too, and bench/plot.py draws it in
# build/bench.svg (docs/bench.svg is the one docs/benchmarks.md shows).
# A second run measures the many-allocation case with slabs on
# (MEMCTL_SLAB, docs/design.md "Slabs").
BENCH_SLAB ?= 64M
BENCH_SLAB_ARGS ?= 16 4096
bench: ## benchmarks against the measured hardware limits, and their picture (GPU; says so and exits 0 without one)
	@if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then \
	    echo "bench: no NVIDIA GPU on this machine; nothing measured"; exit 0; fi; \
	$(MAKE) --no-print-directory $(LIB) $(GPU)/bench && \
	{ LD_PRELOAD=$(CURDIR)/$(LIB) $(GPU)/bench $(BENCH_ARGS); echo $$? >$(BUILD)/bench.rc; \
	  MEMCTL_SLAB=$(BENCH_SLAB) LD_PRELOAD=$(CURDIR)/$(LIB) $(GPU)/bench $(BENCH_SLAB_ARGS); \
	  echo $$? >>$(BUILD)/bench.rc; } | tee $(BUILD)/bench.txt && \
	$(PYTHON) bench/plot.py $(BUILD)/bench.txt $(BUILD)/bench.svg && \
	echo "bench: the picture is $(BUILD)/bench.svg" && \
	! grep -qv '^0$$' $(BUILD)/bench.rc

bench-tms: ## torch_memory_saver's API (memctl.tms) against memctl's own, same workload (GPU + torch)
	@if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then \
	    echo "bench-tms: no NVIDIA GPU on this machine; nothing measured"; exit 0; fi; \
	$(MAKE) --no-print-directory $(LIB) && \
	LD_PRELOAD=$(CURDIR)/$(LIB) PYTHONPATH=$(CURDIR)/python $(PYTHON) bench/tms_bench.py $(BENCH_TMS_ARGS)

# The PyTorch case of issue 12: a transformer of >= 8 GiB built from a
# config (nothing downloaded), paused and resumed by the CLI from outside,
# regions and default-tag mode, against the copy limits of the same process.
bench-torch: ## a >= 8 GiB PyTorch model paused by the CLI vs the copy limits (GPU + torch; BENCH_TORCH_ARGS="LAYERS CYCLES")
	@if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then \
	    echo "bench-torch: no NVIDIA GPU on this machine; nothing measured"; exit 0; fi; \
	$(MAKE) --no-print-directory $(LIB) $(CLI) && \
	$(PYTHON) bench/torch_bench.py $(BUILD) $(BENCH_TORCH_ARGS)

demo: ## the main job: a workload paused and resumed by the memctl CLI (GPU if present, else simulated)
	@$(DEPS_FOR) demo
	@$(MAKE) --no-print-directory DEPS_CHECKED=1 all $(BUILD)/test/prog_tenant
	@sh test/demo/demo.sh $(BUILD)

check: $(LIB) ## exports, DT_NEEDED and constructors of libmemctl.so
	@sh test/check-lib.sh $(LIB)

# The Python helper goes where this python3 looks under PREFIX
# (mk/python-site.py says where; PYTHON_SITE overrides).
install: $(LIB) $(CLI) ## install library, CLI, header, man page and Python helper under DESTDIR/PREFIX
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bin \
	    $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libmemctl.so
	install -m 0755 $(CLI) $(DESTDIR)$(PREFIX)/bin/memctl
	install -m 0644 include/memctl.h $(DESTDIR)$(PREFIX)/include/memctl.h
	install -m 0644 docs/memctl.1 $(DESTDIR)$(PREFIX)/share/man/man1/memctl.1
	@if ! command -v $(PYTHON) >/dev/null 2>&1; then \
	    echo "$(PYTHON) not found: Python helper not installed"; exit 0; fi; \
	site='$(PYTHON_SITE)'; \
	[ -n "$$site" ] || site=$$($(PYTHON) mk/python-site.py '$(PREFIX)') || exit 1; \
	install -d "$(DESTDIR)$$site/memctl" && \
	install -m 0644 python/memctl/*.py "$(DESTDIR)$$site/memctl/" && \
	echo "Python helper: $$site/memctl" && \
	{ [ -n '$(DESTDIR)' ] || $(PYTHON) -c 'import sys; sys.exit(sys.argv[1] not in sys.path)' "$$site" || \
	  echo "  ($(PYTHON) does not search there: set PYTHONPATH=$$site)"; }

# torch_memory_saver's name for memctl's compatibility module, beside the
# Python helper (make install puts that there too). Never part of make
# install, and never over a torch_memory_saver that is not memctl's.
install-tms-compat: install ## also answer `import torch_memory_saver` with memctl (docs/torch_memory_saver.md)
	@site='$(PYTHON_SITE)'; \
	[ -n "$$site" ] || site=$$($(PYTHON) mk/python-site.py '$(PREFIX)') || exit 1; \
	dest="$(DESTDIR)$$site/torch_memory_saver"; \
	if [ -e "$$dest" ] && ! grep -qs '__memctl_compat__' "$$dest/__init__.py"; then \
	    echo "install-tms-compat: $$dest is another torch_memory_saver; not replaced" \
	         "(uninstall it first: pip uninstall torch_memory_saver)"; exit 1; fi; \
	if ls -d "$(DESTDIR)$$site"/torch_memory_saver-*.dist-info >/dev/null 2>&1; then \
	    echo "install-tms-compat: pip's torch_memory_saver is installed in $$site;" \
	         "uninstall it first (pip uninstall torch_memory_saver)"; exit 1; fi; \
	install -d "$$dest" && \
	install -m 0644 python/compat/torch_memory_saver/__init__.py "$$dest/__init__.py" && \
	echo "torch_memory_saver (memctl): $$site/torch_memory_saver" && \
	{ [ -n '$(DESTDIR)' ] || \
	  [ "$$(cd / && $(PYTHON) -c 'import torch_memory_saver as t; print(t.__file__)' 2>/dev/null)" \
	    = "$$dest/__init__.py" ] || \
	  echo "  ($(PYTHON) imports another torch_memory_saver first: check sys.path)"; }

clean: ## remove build/
	rm -rf $(BUILD)

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE) | sed 's/:.*## /\t/' | expand -t 12

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

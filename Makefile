# d2nwg - one entry point: deps, all, test, asan, bench, run, cuda (make CUDA=1)
#
#   make run     install missing Debian packages, build, build the default zoo
#                and generator on first run (var/), start d2nwgd on 127.0.0.1:8080
#   make test    install missing packages, build, run every test; the last line
#                is "N passed, N failed"
#   make asan    the whole suite under AddressSanitizer + UBSan
#   make bench   performance and quality runs (long)
#   make CUDA=1  add the CUDA backend (needs /usr/local/cuda)
#   make MPI=1   build with OpenMPI's mpicc: d2nwg train under mpirun trains
#                data parallel (build/mpi; Debian openmpi-bin, libopenmpi-dev)

CC ?= cc
CUDA ?= 0
CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(CUDA_HOME)/bin/nvcc
SAN ?= 0
MPI ?= 0
# Each configuration builds in its own folder, so `make CUDA=1` after `make`
# builds a CUDA binary instead of finding plain objects up to date:
#   build/ (plain), build/cuda (CUDA=1), build/mpi (MPI=1), build/asan (SAN=1),
#   build/cuda/asan.
# BUILD=DIR overrides it; DIR/flags.stamp (below) then still rebuilds every
# object when the flags change.
ifeq ($(origin BUILD),undefined)
  BUILD := build$(if $(filter 1,$(CUDA)),/cuda)$(if $(filter 1,$(MPI)),/mpi)$(if $(filter 1,$(SAN)),/asan)
endif
# `make run`, `make test` and `make asan` build with every core unless -j is given.
NPROC := $(shell nproc 2>/dev/null || echo 1)
JOBS := $(if $(filter -j%,$(MAKEFLAGS)),,-j$(NPROC))

OPT ?= -O2
WARN := -Wall -Wextra -Werror
CFLAGS := -std=c11 $(OPT) -g $(WARN) -D_GNU_SOURCE -pthread -fno-strict-aliasing -MMD -MP
# core/ is in layers; each folder sees only the headers of the layers below it
# (ARCHITECTURE in README.md). A wrong-direction include fails to compile, and
# tests/layers.sh checks every forbidden pair.
#   base < backend < nn (+ safetensors: backbone files);  base < safetensors < data < target
#   < zoo; target also uses nn (the cnn:FILE feature map runs a backbone);
#   model: nn + target;  train: model + zoo;  proto: core;  server, client: proto
#   lm (the byte-level language model, its LoRA adapters and trainer): nn + data
LAYER_DEPS_base :=
LAYER_DEPS_backend := base
LAYER_DEPS_safetensors := base
LAYER_DEPS_nn := base backend safetensors
LAYER_DEPS_data := base safetensors
LAYER_DEPS_target := base backend safetensors nn data
LAYER_DEPS_zoo := base backend safetensors data target
LAYER_DEPS_model := base backend nn safetensors data target
LAYER_DEPS_train := base backend nn safetensors data target zoo model
LAYER_DEPS_lm := base backend safetensors nn data
CORE_LAYERS := base backend safetensors nn data target zoo model train lm
layer_inc = $(foreach d,$(1) $(LAYER_DEPS_$(1)),-Icore/$(d))
CORE_INC := $(foreach d,$(CORE_LAYERS),-Icore/$(d))
CPPFLAGS := -I$(BUILD)/gen
$(foreach l,$(CORE_LAYERS),$(eval $$(BUILD)/core/$(l)/%.o: LAYER_INC := $$(call layer_inc,$(l))))
# core/data draws the glyphs source with FreeType; no other folder sees its headers.
FREETYPE_INC := $(shell pkg-config --cflags freetype2 2>/dev/null || echo -I/usr/include/freetype2)
$(BUILD)/core/data/%.o: LAYER_INC += $(FREETYPE_INC)
$(BUILD)/proto/%.o: LAYER_INC := $(CORE_INC) -Iproto
# PostgreSQL's client library (server/store_pg*.c; Debian libpq-dev)
PQ_INC := $(shell pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
PQ_LIBS := $(shell pkg-config --libs libpq 2>/dev/null || echo -lpq)
$(BUILD)/server/%.o: LAYER_INC := $(CORE_INC) -Iproto -Iserver $(PQ_INC)
$(BUILD)/gen/%.o: LAYER_INC := -Iserver
$(BUILD)/client/%.o: LAYER_INC := $(CORE_INC) -Iproto -Iclient
TEST_INC := $(CORE_INC) -Iproto -Iserver -Iclient $(PQ_INC)
LDLIBS := -lopenblas -ljansson -lmicrohttpd -luv -lsqlite3 $(PQ_LIBS) -lcurl -lfreetype -lz -lm -lpthread
LDFLAGS := -pthread

ifeq ($(SAN),1)
  CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
endif

CORE_SRC := $(foreach l,$(CORE_LAYERS),$(wildcard core/$(l)/*.c))
PROTO_SRC := $(wildcard proto/*.c)
SERVER_SRC := $(filter-out server/main.c,$(wildcard server/*.c))
CLIENT_SRC := $(filter-out client/main.c,$(wildcard client/*.c))

ifeq ($(MPI),1)
  CC := mpicc
  CPPFLAGS += -DD2_WITH_MPI
endif

ifeq ($(CUDA),1)
  CPPFLAGS += -DD2_WITH_CUDA -I$(CUDA_HOME)/include
  LDLIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
  CUDA_OBJ := $(BUILD)/core/backend/backend_cuda.o
  NVCCFLAGS := -O2 -std=c++17 $(call layer_inc,backend) --compiler-options -fPIC,-Wall \
    -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
    -gencode arch=compute_90,code=compute_90
else
  CUDA_OBJ :=
endif

# The flags an object was built with: objects depend on this stamp, rewritten
# only when the flags differ from the last build in $(BUILD) (not for goals that
# build nothing).
FLAGS_STAMP := $(BUILD)/flags.stamp
FLAGS_LINE := $(CC) $(CPPFLAGS) $(CFLAGS) | $(LDFLAGS) $(LDLIBS) | CUDA=$(CUDA) $(NVCC) $(NVCCFLAGS)
ifneq ($(filter-out clean deps print-layers print-build,$(or $(MAKECMDGOALS),all)),)
  $(shell mkdir -p $(BUILD) && [ "$$(cat $(FLAGS_STAMP) 2>/dev/null)" = '$(FLAGS_LINE)' ] || \
    printf '%s\n' '$(FLAGS_LINE)' > $(FLAGS_STAMP))
endif
$(FLAGS_STAMP):
	@mkdir -p $(dir $@) && printf '%s\n' '$(FLAGS_LINE)' > $@

CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o) $(CUDA_OBJ)
PROTO_OBJ := $(PROTO_SRC:%.c=$(BUILD)/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
CLIENT_OBJ := $(CLIENT_SRC:%.c=$(BUILD)/%.o)

LIBCORE := $(BUILD)/libd2core.a
LIBPROTO := $(BUILD)/libd2proto.a
LIBSERVER := $(BUILD)/libd2server.a
LIBCLIENT := $(BUILD)/libd2client.a
ALL_LIBS := $(LIBSERVER) $(LIBCLIENT) $(LIBPROTO) $(LIBCORE)

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
API_SRC := $(wildcard tests/api/test_*.c)
API_BIN := $(API_SRC:tests/api/%.c=$(BUILD)/tests/api/%)
BENCH_SRC := $(wildcard tests/bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/tests/bench/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/fuzz/%)

DEB_PACKAGES := gcc make pkg-config libopenblas-dev libmicrohttpd-dev libjansson-dev \
  libuv1-dev libsqlite3-dev zlib1g-dev libcurl4-openssl-dev libcmocka-dev \
  dataset-fashion-mnist python3-sklearn python3-numpy curl wrk libfreetype-dev fonts-noto-core \
  prometheus python3-jsonschema python3-yaml systemd binutils python3-torch chromium \
  openmpi-bin libopenmpi-dev docker-compose libpq-dev postgresql \
  wamerican wbritish wcanadian wfrench witalian wspanish wswedish wcatalan wngerman wogerman \
  wswiss wdutch wdanish wnorwegian wpolish wukrainian wbulgarian wportuguese wbrazilian \
  wesperanto wirish wgaelic wmanx wfaroese wgalician-minimos

.PHONY: all deps test check asan bench run generators clean cuda print-layers print-build \
  unit-bins api-bins bench-bins fuzz-bins
.DEFAULT_GOAL := all

all: $(BUILD)/d2nwgd $(BUILD)/d2nwg $(LIBCORE)

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing </dev/null; \
	fi
	@# npm-only tools (the OpenAPI linter), pinned in tools/package-lock.json
	@sh tools/install.sh >/dev/null

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(LAYER_INC) $(CFLAGS) -c $< -o $@

$(BUILD)/core/backend/backend_cuda.o: core/backend/backend_cuda.cu core/backend/backend.h core/base/rng.h core/base/common.h $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(LIBCORE): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(LIBPROTO): $(PROTO_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(LIBSERVER): $(SERVER_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(LIBCLIENT): $(CLIENT_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# d2nwgd embeds its SQL migrations, proto/openapi.yaml and the dashboard page
# (ui/: HTML, CSS and JavaScript, served at /) at build time:
# server/embed.sh (od + awk) writes $(BUILD)/gen/embedded_data.c, which goes
# into libd2server next to server/*.o.
EMBED_FILES := proto/openapi.yaml $(sort $(wildcard migrations/sqlite/*.sql)) $(sort $(wildcard migrations/postgres/*.sql)) $(sort $(wildcard ui/*.*))
EMBED_OBJ := $(BUILD)/gen/embedded_data.o
$(BUILD)/gen/embedded_data.c: $(EMBED_FILES) server/embed.sh
	@mkdir -p $(dir $@)
	sh server/embed.sh $(EMBED_FILES) > $@.tmp && mv $@.tmp $@
$(EMBED_OBJ): $(BUILD)/gen/embedded_data.c server/embedded.h $(FLAGS_STAMP)
	$(CC) $(CPPFLAGS) $(LAYER_INC) $(CFLAGS) -c $< -o $@
$(LIBSERVER): $(EMBED_OBJ)

$(BUILD)/d2nwgd: $(BUILD)/server/main.o $(LIBSERVER) $(LIBPROTO) $(LIBCORE) $(FLAGS_STAMP)
	$(CC) $(LDFLAGS) -o $@ $(filter-out $(FLAGS_STAMP),$^) $(LDLIBS)
$(BUILD)/d2nwg: $(BUILD)/client/main.o $(LIBCLIENT) $(LIBPROTO) $(LIBCORE) $(FLAGS_STAMP)
	$(CC) $(LDFLAGS) -o $@ $(filter-out $(FLAGS_STAMP),$^) $(LDLIBS)

$(BUILD)/tests/unit/%: tests/unit/%.c $(ALL_LIBS) tests/unit/testutil.h tests/unit/tu_pg.h $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(TEST_INC) -Itests/unit $(CFLAGS) -o $@ $< $(LDFLAGS) $(ALL_LIBS) $(LDLIBS) -lcmocka
$(BUILD)/tests/api/%: tests/api/%.c $(ALL_LIBS) tests/unit/testutil.h tests/unit/tu_pg.h tests/api/apitest.h $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(TEST_INC) -Itests/unit -Itests/api $(CFLAGS) -o $@ $< $(LDFLAGS) $(ALL_LIBS) $(LDLIBS) -lcmocka
$(BUILD)/tests/bench/%: tests/bench/%.c tests/bench/bench_stats.h $(ALL_LIBS) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(TEST_INC) -Itests/unit $(CFLAGS) -o $@ $< $(LDFLAGS) $(ALL_LIBS) $(LDLIBS)
$(BUILD)/tests/fuzz/%: tests/fuzz/%.c $(ALL_LIBS) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(TEST_INC) $(CFLAGS) -o $@ $< $(LDFLAGS) $(ALL_LIBS) $(LDLIBS)

unit-bins: $(UNIT_BIN)
api-bins: $(API_BIN)
bench-bins: $(BENCH_BIN)
fuzz-bins: $(FUZZ_BIN)

# The suite: unit tests, then API tests against real daemons. When nvcc is
# present the CUDA backend must also compile (issue: CUDA backend), and its
# backend comparison runs (it skips with a message where no GPU exists).
test: deps
	$(MAKE) $(JOBS) all unit-bins api-bins fuzz-bins
	@if [ "$(CUDA)" != 1 ] && [ -x "$(NVCC)" ] && [ "$(SAN)" != 1 ]; then \
	  $(MAKE) --no-print-directory $(JOBS) CUDA=1 BUILD=$(BUILD)/cuda all unit-bins || exit 1; \
	  CUDA_BUILD=$(BUILD)/cuda; else CUDA_BUILD=; fi; \
	if [ "$(MPI)" != 1 ] && [ "$(SAN)" != 1 ] && command -v mpicc >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory $(JOBS) MPI=1 BUILD=$(BUILD)/mpi all || exit 1; \
	  MPI_BUILD=$(BUILD)/mpi; else MPI_BUILD=; fi; \
	D2NWG_BUILD=$(BUILD) CUDA_BUILD=$$CUDA_BUILD MPI_BUILD=$$MPI_BUILD sh tests/run_tests.sh $(BUILD)

check: test

# The shared test fixtures (quick generators) are trained by the normal build
# and copied: sanitized binaries would take minutes to train it.
asan: deps
	$(MAKE) $(JOBS) all
	sh tests/fixture.sh $(BUILD) >/dev/null
	sh tests/fixture.sh $(BUILD) anyway >/dev/null
	sh tests/fixture.sh $(BUILD) perclass >/dev/null
	FIXTURE_SOURCE=$(BUILD) $(MAKE) $(JOBS) SAN=1 OPT=-O1 BUILD=$(BUILD)/asan test

bench: deps
	$(MAKE) all bench-bins
	@if [ "$(MPI)" != 1 ] && command -v mpicc >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory MPI=1 BUILD=$(BUILD)/mpi all || exit 1; fi
	D2NWG_BUILD=$(BUILD) sh tests/bench/run_bench.sh $(BUILD)

run: deps
	$(MAKE) $(JOBS) all
	sh deploy/run.sh $(BUILD)

# Every generator `make run` serves, built into var/ (deploy/generators.sh).
generators: deps
	$(MAKE) $(JOBS) all
	sh deploy/generators.sh $(BUILD) all

# The layer table as tests/layers.sh reads it: "folder: folders it may include".
print-layers:
	@$(foreach l,$(CORE_LAYERS),echo "core/$(l): $(foreach d,$(l) $(LAYER_DEPS_$(l)),core/$(d))";)
	@echo "proto: $(foreach d,$(CORE_LAYERS),core/$(d)) proto"
	@echo "server: $(foreach d,$(CORE_LAYERS),core/$(d)) proto server"
	@echo "client: $(foreach d,$(CORE_LAYERS),core/$(d)) proto client"

# The folder this configuration builds in (tests/pkg/build_folders.sh reads it).
print-build:
	@echo $(BUILD)

cuda:
	$(MAKE) CUDA=1 BUILD=$(BUILD)/cuda all

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

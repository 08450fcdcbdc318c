# jrp — build, test, demo and local servers. `make help` lists the targets.
#
# Objects and test binaries of a sanitized build live apart from the plain ones
# (build/obj vs build/san/obj), so switching SANITIZE never mixes them.

CC        ?= cc
BUILD     ?= build
SANITIZE  ?=
OPT       ?= -O2
PKGS      := rdkafka hiredis libprotobuf-c libuv jansson libcurl openssl

ifeq ($(SANITIZE),)
VDIR      := $(BUILD)
SANFLAGS  :=
else
VDIR      := $(BUILD)/san
SANFLAGS  := -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
endif

OBJDIR    := $(VDIR)/obj
BINDIR    := $(VDIR)/bin
TESTDIR   := $(VDIR)/tests
GENDIR    := $(BUILD)/gen

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CPPFLAGS  += -I$(GENDIR) -Icommon -D_GNU_SOURCE
CFLAGS    += -std=c11 -g $(OPT) -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
             -Wno-missing-field-initializers $(SANFLAGS) $(PKG_CFLAGS) -MMD -MP
LDLIBS    += $(PKG_LIBS) -lhttp_parser -lm -lpthread
LDFLAGS   += $(SANFLAGS)

# jrp-engine allocates and frees many small blocks per event (states, records, librdkafka's
# messages); glibc's malloc took ~40% of its thread. It links jemalloc (Debian's libjemalloc2),
# set up in services/engine/main.c; docs/engine.md has the numbers. Not in a sanitized build,
# whose runtime brings its own allocator.
ifeq ($(SANITIZE),)
ENGINE_LIBS := -ljemalloc
endif

PROTOS    := $(wildcard proto/jrp/v1/*.proto)
GEN_C     := $(patsubst proto/%.proto,$(GENDIR)/%.pb-c.c,$(PROTOS))
GEN_H     := $(GEN_C:.c=.h)
GEN_OBJ   := $(patsubst $(GENDIR)/%.c,$(OBJDIR)/gen/%.o,$(GEN_C))

COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(patsubst %.c,$(OBJDIR)/%.o,$(COMMON_SRC))
LIBJRP     := $(OBJDIR)/libjrp.a

# services/<dir> -> binary name; ctl is the operator's jrpctl, the others are jrp-<dir>.
SERVICE_DIRS := $(patsubst services/%/,%,$(sort $(dir $(wildcard services/*/main.c))))
binname       = $(if $(filter ctl,$(1)),jrpctl,jrp-$(1))
BINS         := $(foreach s,$(SERVICE_DIRS),$(BINDIR)/$(call binname,$(s)))

UNIT_SRC  := $(wildcard tests/unit/test_*.c)
INTEG_SRC := $(wildcard tests/integration/test_*.c)
TEST_HELPERS := $(patsubst %.c,$(OBJDIR)/%.o,$(wildcard tests/support/*.c))
TEST_BINS := $(patsubst tests/%.c,$(TESTDIR)/%,$(UNIT_SRC) $(INTEG_SRC))

FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
FUZZ_CC   ?= clang

BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BINS := $(patsubst bench/%.c,$(VDIR)/bench/%,$(BENCH_SRC))

FORMAT_FILES = $(shell find common services tests bench -name '*.[ch]' 2>/dev/null)

.PHONY: fuzzers all bins tests benches deps up down test test-unit test-integration demo bench \
        format format-check clean help docs
.DEFAULT_GOAL := all
# Generated sources are kept (make would delete them as intermediates).
.SECONDARY: $(GEN_C) $(GEN_H)

all: bins

help:
	@echo "make                 build every binary into $(BUILD)/bin (-Werror)"
	@echo "make test            install what is missing, start Kafka and Redis, run every test (ASan+UBSan)"
	@echo "make demo            run the main job on the embedded default (mock Kafka, local Redis)"
	@echo "make up / make down  start / stop a local real Kafka (KRaft) and Redis; writes $(BUILD)/local/jrp.conf"
	@echo "make bench           benchmarks, each printed beside its baseline"
	@echo "make deps            install missing Debian packages (apt-get, when root)"
	@echo "make format-check    clang-format check; make format rewrites"
	@echo "make docs            regenerate docs/configuration.md from the config table"
	@echo "make SANITIZE=address,undefined ...   sanitized build in $(BUILD)/san/"

bins: $(BINS)

# docs/configuration.md is generated from common/config.c's table (tests/scripts/test_docs.sh
# fails when they differ).
docs: $(BINDIR)/jrpctl
	$(BINDIR)/jrpctl config keys > docs/configuration.md
tests: $(TEST_BINS) $(BINS)
benches: $(BENCH_BINS) $(BINS)

# --- generated protobuf code ---------------------------------------------------------------
$(GENDIR)/%.pb-c.c $(GENDIR)/%.pb-c.h: proto/%.proto
	@mkdir -p $(GENDIR)
	protoc-c --c_out=$(GENDIR) -Iproto $<

# Every object may include any generated header.
$(OBJDIR)/gen/%.o: $(GENDIR)/%.c | $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-shadow -c -o $@ $<

$(OBJDIR)/%.o: %.c | $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(OBJDIR)/tests/%.o: CPPFLAGS += -Itests/support

$(LIBJRP): $(COMMON_OBJ) $(GEN_OBJ)
	@rm -f $@
	ar rcs $@ $^

# --- binaries ------------------------------------------------------------------------------
define SERVICE_RULE
$(BINDIR)/$(call binname,$(1)): $(patsubst %.c,$(OBJDIR)/%.o,$(wildcard services/$(1)/*.c)) $(LIBJRP)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS) $$(if $$(filter engine,$(1)),$$(ENGINE_LIBS))
endef
$(foreach s,$(SERVICE_DIRS),$(eval $(call SERVICE_RULE,$(s))))

# Tests drive services in-process too: every service's objects but its main.
SERVICE_LIB_OBJ := $(patsubst %.c,$(OBJDIR)/%.o,$(filter-out %/main.c services/ctl/%,$(wildcard services/*/*.c)))
$(OBJDIR)/tests/%.o: CPPFLAGS += $(patsubst %,-I%,$(wildcard services/*))

$(TESTDIR)/%: $(OBJDIR)/tests/%.o $(TEST_HELPERS) $(SERVICE_LIB_OBJ) $(LIBJRP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(VDIR)/bench/%: $(OBJDIR)/bench/%.o $(LIBJRP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# libFuzzer targets: each compiled with clang together with all of common/ (instrumented).
fuzzers: $(FUZZ_BINS)
$(BUILD)/fuzz/%: tests/fuzz/%.c $(COMMON_SRC) $(GEN_C) | $(GEN_H)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) \
		-o $@ $< $(COMMON_SRC) $(GEN_C) $(LDLIBS)

# --- the newcomer's commands -----------------------------------------------------------------
deps:
	@scripts/deps.sh

up: deps
	@deploy/local/up.sh

down:
	@deploy/local/down.sh

# make test: everything under ASan+UBSan against a real Kafka and Redis it starts (and stops).
test: deps
	@$(MAKE) --no-print-directory SANITIZE=address,undefined tests
	@$(MAKE) --no-print-directory fuzzers
	@scripts/test.sh $(BUILD)/san $(BUILD)/fuzz

test-unit: deps
	@$(MAKE) --no-print-directory SANITIZE=address,undefined tests
	@scripts/test.sh --unit-only $(BUILD)/san

demo: deps
	@$(MAKE) --no-print-directory bins
	@scripts/demo.sh

bench: deps
	@$(MAKE) --no-print-directory benches
	@bench/run.sh $(VDIR)

format:
	clang-format -i $(FORMAT_FILES)

format-check:
	@clang-format --dry-run -Werror $(FORMAT_FILES) && echo "format-check: clean"

clean:
	rm -rf $(BUILD)/obj $(BUILD)/bin $(BUILD)/san $(BUILD)/gen $(BUILD)/tests $(BUILD)/bench

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

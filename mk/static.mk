# The small static binary for embedded and legacy Unix (docs/portability.md).
#   make static              $(BUILD)/smtpd-static: -static, stripped, -Os,
#                            built with -DSMTPD_STATIC (no NSS at run time)
#   make static-size-check   the size budget (STATIC_MAX_BYTES)
#   make static-check        tests/cross/static_check.sh: empty environment;
#                            chroot holding only the binary, /etc/passwd and
#                            /etc/hosts; drops to nobody
#   make static-conformance  the shared conformance check, every poller
#   make static-test         the GoogleTest suite built the same way
#                            (static, -DSMTPD_STATIC), every poller
#   make small               $(BUILD)/smtpd-small: dynamic, -Os, stripped
#   make install-static      as `make install`, with the static binary as
#                            $(PREFIX)/bin/smtpd (`make uninstall` removes it)
#   make size-report         sizes against the budgets, heaviest symbols
# Objects go to $(BUILD)/static-obj and $(BUILD)/small-obj, apart from the
# ordinary build's. STATIC_RUNNER (e.g. qemu-arm-static) runs a foreign
# binary: mk/cross.mk sets it, with CXX and BUILD, for `make cross-test`.

STATIC_BIN       = $(BUILD)/smtpd-static
STATIC_OBJDIR    = $(BUILD)/static-obj
STATIC_CXXFLAGS ?= -Os -ffunction-sections -fdata-sections
# Per-target additions (mk/cross.mk: -Wno-psabi for armhf).
STATIC_EXTRA_CXXFLAGS ?=
# 64-bit off_t and directory offsets on 32-bit targets too: without it a
# 32-bit readdir(3) fails with EOVERFLOW on ext4 under qemu-user.
LFS_CPPFLAGS     = -D_FILE_OFFSET_BITS=64
STATIC_CPPFLAGS  = -DSMTPD_STATIC $(LFS_CPPFLAGS)
STATIC_LDFLAGS  ?= -static -s -Wl,--gc-sections
STATIC_RUNNER   ?=
# Budgets, in bytes: the stripped static binary (1 MiB, x86-64) and a
# stripped dynamic build (150 KiB).
STATIC_MAX_BYTES  ?= 1048576
DYNAMIC_MAX_BYTES ?= 153600
STRIP            ?= strip
CONFORMANCE_DIR  ?= ../shared/conformance
STATIC_POLLERS   ?= epoll poll select

STATIC_OBJS     = $(SRCS:%.cc=$(STATIC_OBJDIR)/%.o)
STATIC_LIB_OBJS = $(LIB_SRCS:%.cc=$(STATIC_OBJDIR)/%.o)
STATIC_LIB      = $(STATIC_OBJDIR)/libsmtpd.a
STATIC_SERVER   = $(strip $(STATIC_RUNNER) $(STATIC_BIN))

.PHONY: static static-size-check static-check static-conformance \
  static-test static-tests \
  small size-report install-static

static: $(STATIC_BIN)

# Rebuilt when the compiler or flags change (its text differs), so one
# BUILD directory never mixes objects built two ways.
STATIC_STAMP = $(STATIC_OBJDIR)/flags
STATIC_FLAGS_TEXT = $(CXX) $(STATIC_CXXFLAGS) $(STATIC_EXTRA_CXXFLAGS) \
  $(STATIC_CPPFLAGS) $(CPPFLAGS)

.PHONY: static-flags-force
$(STATIC_STAMP): static-flags-force
	@mkdir -p $(dir $@)
	@echo '$(STATIC_FLAGS_TEXT)' | cmp -s - $@ || \
	  echo '$(STATIC_FLAGS_TEXT)' > $@

$(STATIC_OBJDIR)/%.o: %.cc $(STATIC_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 $(WARNINGS) $(STATIC_CXXFLAGS) $(STATIC_EXTRA_CXXFLAGS) \
	  $(STATIC_CPPFLAGS) $(CPPFLAGS) -MMD -MP -c $< -o $@

$(STATIC_BIN): $(STATIC_OBJS)
	$(CXX) $(STATIC_CXXFLAGS) $(STATIC_LDFLAGS) -o $@ $^ $(LDLIBS)

static-size-check: $(STATIC_BIN)
	@size=$$(wc -c < $(STATIC_BIN)); \
	echo "static: $(STATIC_BIN) $$size bytes (budget $(STATIC_MAX_BYTES))"; \
	[ "$$size" -le $(STATIC_MAX_BYTES) ] || \
	  { echo "static: over the size budget (make size-report)"; exit 1; }

static-check: $(STATIC_BIN)
	sh tests/cross/static_check.sh $(STATIC_BIN) $(STATIC_RUNNER)

static-conformance: $(STATIC_BIN)
	@status=0; for p in $(STATIC_POLLERS); do \
	  echo "== conformance: $(STATIC_SERVER), SMTPD_POLLER=$$p"; \
	  SMTPD_POLLER=$$p python3 $(CONFORMANCE_DIR)/smtpconf.py check \
	    --scenarios $(CONFORMANCE_DIR)/scenarios \
	    --server "$(STATIC_SERVER)" -j 2 || status=1; \
	done; exit $$status

# -- the GoogleTest suite, linked statically against the -DSMTPD_STATIC
# objects. STATIC_GTEST=system uses Debian's libgtest.a; =source builds
# GoogleTest from libgtest-dev's sources with $(CXX) (cross compilers).
STATIC_GTEST     ?= system
GTEST_SRC        ?= /usr/src/googletest/googletest
STATIC_TEST_BIN   = $(BUILD)/smtpd_tests-static
STATIC_TEST_OBJS  = $(TEST_SRCS:%.cc=$(STATIC_OBJDIR)/%.o)
GTEST_DIR         = $(BUILD)/gtest
ifeq ($(STATIC_GTEST),source)
GTEST_CPPFLAGS = -isystem $(GTEST_SRC)/include
GTEST_LIBS     = $(GTEST_DIR)/libgtest_main.a $(GTEST_DIR)/libgtest.a
GTEST_DEPS     = $(GTEST_LIBS)
else
GTEST_CPPFLAGS =
GTEST_LIBS     = -lgtest_main -lgtest
GTEST_DEPS     =
endif

$(STATIC_TEST_OBJS): private CPPFLAGS += $(GTEST_CPPFLAGS)

$(GTEST_DIR)/%.o: $(GTEST_SRC)/src/%.cc
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -O1 $(LFS_CPPFLAGS) -isystem $(GTEST_SRC)/include \
	  -I$(GTEST_SRC) \
	  -c $< -o $@

$(GTEST_DIR)/libgtest.a: $(GTEST_DIR)/gtest-all.o
	rm -f $@ && $(AR) rcs $@ $^

$(GTEST_DIR)/libgtest_main.a: $(GTEST_DIR)/gtest_main.o
	rm -f $@ && $(AR) rcs $@ $^

$(STATIC_LIB): $(STATIC_LIB_OBJS)
	rm -f $@ && $(AR) rcs $@ $^

$(STATIC_TEST_BIN): $(STATIC_TEST_OBJS) $(STATIC_LIB) $(GTEST_DEPS)
	$(CXX) $(STATIC_CXXFLAGS) -static -Wl,--gc-sections -o $@ \
	  $(STATIC_TEST_OBJS) $(STATIC_LIB) $(GTEST_LIBS) -pthread

static-tests: $(STATIC_BIN) $(STATIC_TEST_BIN)

# Extra arguments for every run of the suite, e.g. a --gtest_filter.
STATIC_TEST_ARGS ?=

# Under an emulator the suite and the binary it starts are run through
# two small scripts; SMTPD_BIN names the one for the binary.
static-test: static-tests
ifeq ($(STATIC_RUNNER),)
	SMTPD_BIN=$(STATIC_BIN) sh tests/run_suite.sh $(STATIC_TEST_BIN) \
	  $(STATIC_TEST_ARGS)
else
	printf '#!/bin/sh\nexec %s %s "$$@"\n' "$(STATIC_RUNNER)" \
	  "$(abspath $(STATIC_BIN))" > $(STATIC_BIN).run
	printf '#!/bin/sh\nexec %s %s "$$@"\n' "$(STATIC_RUNNER)" \
	  "$(abspath $(STATIC_TEST_BIN))" > $(STATIC_TEST_BIN).run
	chmod +x $(STATIC_BIN).run $(STATIC_TEST_BIN).run
	SMTPD_BIN=$(abspath $(STATIC_BIN)).run \
	  sh tests/run_suite.sh $(STATIC_TEST_BIN).run $(STATIC_TEST_ARGS)
endif

# -- a small dynamic build: the same size flags, shared libc and libstdc++.
SMALL_BIN    = $(BUILD)/smtpd-small
SMALL_OBJDIR = $(BUILD)/small-obj
SMALL_OBJS   = $(SRCS:%.cc=$(SMALL_OBJDIR)/%.o)

small: $(SMALL_BIN)

$(SMALL_OBJDIR)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 $(WARNINGS) $(STATIC_CXXFLAGS) $(CPPFLAGS) \
	  -MMD -MP -c $< -o $@

$(SMALL_BIN): $(SMALL_OBJS)
	$(CXX) $(STATIC_CXXFLAGS) -s -Wl,--gc-sections -o $@ $^ $(LDLIBS)

size-report: $(BUILD)/smtpd $(STATIC_BIN) $(SMALL_BIN)
	STRIP=$(STRIP) sh tests/cross/size_report.sh $(BUILD) \
	  $(DYNAMIC_MAX_BYTES) $(STATIC_MAX_BYTES)

install-static: $(STATIC_BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 755 $(STATIC_BIN) $(DESTDIR)$(PREFIX)/bin/smtpd
	install -m 644 man/smtpd.8 $(DESTDIR)$(PREFIX)/share/man/man8/smtpd.8

-include $(STATIC_OBJS:.o=.d) $(STATIC_TEST_OBJS:.o=.d) $(SMALL_OBJS:.o=.d)

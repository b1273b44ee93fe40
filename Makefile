# smtpd: a C++17 replacement for Python's smtpd. See README.md.
#   make            build/smtpd
#   make test       the GoogleTest suite, once per poller backend
#   make install    PREFIX=/usr/local DESTDIR=
CXX      ?= g++
CXXFLAGS ?= -O2 -g
WARNINGS  = -Wall -Wextra -Wpedantic
# 64-bit file offsets on 32-bit targets too (readdir on ext4 needs them).
CPPFLAGS += -Iinclude -Isrc -D_FILE_OFFSET_BITS=64
LDLIBS   ?=
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    ?= build

SRCS      := $(sort $(wildcard src/*.cc src/poller/*.cc))
LIB_SRCS  := $(filter-out src/main.cc,$(SRCS))
LIB_OBJS  := $(LIB_SRCS:%.cc=$(BUILD)/obj/%.o)
MAIN_OBJ  := $(BUILD)/obj/src/main.o
TEST_SRCS := $(sort $(wildcard tests/*_test.cc))
TEST_OBJS := $(TEST_SRCS:%.cc=$(BUILD)/obj/%.o)

.PHONY: all test install uninstall clean
all: $(BUILD)/smtpd

$(BUILD)/obj/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 $(WARNINGS) $(CXXFLAGS) $(CPPFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libsmtpd.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/smtpd: $(MAIN_OBJ) $(BUILD)/libsmtpd.a
	$(CXX) $(CXXFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/smtpd_tests: $(TEST_OBJS) $(BUILD)/libsmtpd.a
	$(CXX) $(CXXFLAGS) $(LDFLAGS) -o $@ $^ -lgtest -lgtest_main -pthread $(LDLIBS)

# Runs the whole suite on every backend this build has; ends with the
# plain "N passed, M failed" line.
test: $(BUILD)/smtpd $(BUILD)/smtpd_tests
	SMTPD_BIN=$(BUILD)/smtpd sh tests/run_suite.sh $(BUILD)/smtpd_tests

install: $(BUILD)/smtpd
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 755 $(BUILD)/smtpd $(DESTDIR)$(PREFIX)/bin/smtpd
	install -m 644 man/smtpd.8 $(DESTDIR)$(PREFIX)/share/man/man8/smtpd.8

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/smtpd $(DESTDIR)$(PREFIX)/share/man/man8/smtpd.8

clean:
	rm -rf $(BUILD)

# Further targets (static, cross-test, bench, fuzz, sanitizers) live in mk/.
-include $(sort $(wildcard mk/*.mk))

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJ:.o=.d) $(TEST_OBJS:.o=.d)

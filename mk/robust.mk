# Robustness targets (included by the Makefile). The sanitizer and fuzzer
# builds have their own build directories, so none of them disturbs build/.
#   make fuzz            libFuzzer on SMTPChannel for FUZZ_TIME seconds
#   make fuzz-replay     the seeds through the fuzz target without libFuzzer
#   make fuzz-seeds      regenerate fuzz/corpus from ../shared's scenarios
#   make asan-test       the suite built with ASan+UBSan (clang), all backends
#   make valgrind-test   the wire and fault tests, the server they start and
#                        the fuzz seeds under memcheck
#   make stress          the long fault tests (tests/stress/stress.py)
SAN_CXX       ?= clang++
SAN_FLAGS     ?= -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
                 -fno-sanitize-recover=all
ASAN_BUILD    ?= build-asan
FUZZ_BUILD    ?= build-fuzz
FUZZ_TIME     ?= 120
FUZZ_ARGS     ?= -max_len=8192 -timeout=10 -rss_limit_mb=2048 -dict=fuzz/smtp.dict
FUZZER        := $(FUZZ_BUILD)/smtp_channel_fuzzer
FUZZ_REPLAY   := $(BUILD)/fuzz_replay
VALGRIND      ?= valgrind
MEMCHECK      ?= $(VALGRIND) --error-exitcode=99 --leak-check=full \
                 --errors-for-leak-kinds=definite,indirect
VALGRIND_FILTER ?= WireTest.*:RobustTest.*
# Any memcheck error report (also from servers the tests kill, which never
# reach their summary), or a definite leak.
MEMCHECK_ERRORS := ERROR SUMMARY: [1-9]|definitely lost: [1-9]|Invalid (read|write|free)
MEMCHECK_ERRORS := $(MEMCHECK_ERRORS)|uninitialised|Mismatched free|overlap|Syscall param
STRESS_ARGS   ?=
SAN_ENV       := \
  ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

.PHONY: fuzz fuzz-build fuzz-replay fuzz-seeds asan-test valgrind-test stress

# The library and the target are built by a second make with BUILD and the
# sanitizer flags set, so the ordinary rules apply unchanged.
fuzz-build:
	$(MAKE) BUILD=$(FUZZ_BUILD) CXX=$(SAN_CXX) \
	  CXXFLAGS="$(SAN_FLAGS) -fsanitize=fuzzer-no-link" $(FUZZER)

$(FUZZ_BUILD)/smtp_channel_fuzzer: $(FUZZ_BUILD)/obj/fuzz/smtp_channel_fuzzer.o \
                                   $(FUZZ_BUILD)/libsmtpd.a
	$(CXX) $(CXXFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $^ $(LDLIBS)

# New inputs go to $(FUZZ_BUILD)/corpus; fuzz/corpus (the committed seeds)
# is only read. Replays the seeds first, then fuzzes for FUZZ_TIME seconds.
fuzz: fuzz-build
	@mkdir -p $(FUZZ_BUILD)/corpus
	$(SAN_ENV) $(FUZZER) -runs=0 fuzz/corpus
	$(SAN_ENV) $(FUZZER) $(FUZZ_ARGS) -max_total_time=$(FUZZ_TIME) \
	  -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/ \
	  $(FUZZ_BUILD)/corpus fuzz/corpus

# The fuzz target with a plain main() (SMTPD_FUZZ_REPLAY), for memcheck and
# for RSS across many rounds: FUZZ_ROUNDS=1000 $(FUZZ_REPLAY) fuzz/corpus
$(FUZZ_REPLAY): fuzz/smtp_channel_fuzzer.cc $(BUILD)/libsmtpd.a
	$(CXX) -std=c++17 $(WARNINGS) $(CXXFLAGS) $(CPPFLAGS) -DSMTPD_FUZZ_REPLAY \
	  $(LDFLAGS) -o $@ $^ $(LDLIBS)

fuzz-replay: $(FUZZ_REPLAY)
	FUZZ_ROUNDS=200 $(FUZZ_REPLAY) fuzz/corpus

fuzz-seeds:
	python3 tools/make_fuzz_seeds.py ../shared/conformance/scenarios fuzz/corpus

asan-test:
	$(SAN_ENV) $(MAKE) BUILD=$(ASAN_BUILD) CXX=$(SAN_CXX) \
	  CXXFLAGS="$(SAN_FLAGS)" test

# One backend (make test covered them all). --trace-children follows the
# tests into the smtpd they start; every process writes its own log, and
# any error or definite leak in any of them fails the target.
valgrind-test: $(BUILD)/smtpd $(BUILD)/smtpd_tests $(FUZZ_REPLAY)
	@rm -rf $(BUILD)/valgrind && mkdir -p $(BUILD)/valgrind
	SMTPD_POLLER=epoll SMTPD_BIN=$(BUILD)/smtpd $(MEMCHECK) \
	  --trace-children=yes --log-file=$(BUILD)/valgrind/tests.%p.log \
	  $(BUILD)/smtpd_tests --gtest_filter='$(VALGRIND_FILTER)'
	$(MEMCHECK) --log-file=$(BUILD)/valgrind/fuzz.%p.log $(FUZZ_REPLAY) fuzz/corpus
	python3 tests/stress/stress.py --bin $(BUILD)/smtpd \
	  --wrap "$(MEMCHECK) --log-file=$(BUILD)/valgrind/session.%p.log" session
	@if grep -l -E '$(MEMCHECK_ERRORS)' $(BUILD)/valgrind/*.log; then \
	  echo "valgrind-test: memcheck found errors (logs above)"; exit 1; fi
	@echo "valgrind-test: $$(ls $(BUILD)/valgrind/*.log | wc -l) processes, no memcheck errors"

stress: $(BUILD)/smtpd
	python3 tests/stress/stress.py --bin $(BUILD)/smtpd $(STRESS_ARGS) all

-include $(FUZZ_BUILD)/obj/fuzz/smtp_channel_fuzzer.d

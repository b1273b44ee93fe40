# Benchmarks against the peers (bench/README.md, docs/performance.md).
#   make bench                   every workload, every installed peer, 3
#                                repeats (about 15 minutes)
#   make bench BENCH_ARGS=--quick  one short repeat (about 1.5 minutes)
#   make bench-profile           callgrind instructions per message and the
#                                top functions, conc-keep and big
#   make bench-syscalls          strace -c: system calls per message
# `make static bench` also measures $(BUILD)/smtpd-static. Needs postfix's
# smtp-source; python3.11 (smtpd), python3-aiosmtpd and smtp-sink are used
# when installed. Only 127.0.0.1 is used; every server is stopped by PID.
BENCH_PY   ?= python3
BENCH_ARGS ?=
BENCH_PROFILE_ARGS ?=

.PHONY: bench bench-profile bench-syscalls

bench: $(BUILD)/smtpd
	$(BENCH_PY) bench/run_bench.py --smtpd $(BUILD)/smtpd $(BENCH_ARGS)

bench-profile: $(BUILD)/smtpd
	$(BENCH_PY) bench/callgrind.py -w conc-keep --smtpd $(BUILD)/smtpd \
	  $(BENCH_PROFILE_ARGS)
	$(BENCH_PY) bench/callgrind.py -w big --smtpd $(BUILD)/smtpd \
	  $(BENCH_PROFILE_ARGS)

bench-syscalls: $(BUILD)/smtpd
	$(BENCH_PY) bench/syscalls.py -w conc-keep --smtpd $(BUILD)/smtpd
	$(BENCH_PY) bench/syscalls.py -w conc-conn --smtpd $(BUILD)/smtpd

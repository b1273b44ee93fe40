# Cross builds, run under qemu-user (docs/portability.md).
#   make cross-static ARCH=armhf   build-armhf/smtpd-static (and its tests)
#   make cross-test ARCH=armhf     build, then under qemu-arm-static: the
#                                  static checks, the GoogleTest suite and
#                                  the conformance check, every poller
#   make cross-test-all            armhf, arm64 and mips
# ARCH: armhf, arm64, mips (big-endian), mipsel. Needs g++-<triplet>,
# qemu-user-static and libgtest-dev (GoogleTest is built from its sources).
# Each ARCH builds in build-ARCH with the targets of mk/static.mk.

ARCH ?= armhf
CROSS_ARCHS ?= armhf arm64 mips

.PHONY: cross-static cross-test cross-test-all

cross-static:
	MAKE="$(MAKE)" sh tests/cross/cross_test.sh --build-only $(ARCH)

cross-test:
	MAKE="$(MAKE)" sh tests/cross/cross_test.sh $(ARCH)

cross-test-all:
	MAKE="$(MAKE)" sh tests/cross/cross_test.sh $(CROSS_ARCHS)

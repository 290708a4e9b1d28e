# cbd-tools: build, test and demo. `make demo` and `make test` work on a fresh machine
# with only the Swift toolchain: missing system packages are installed first (as root).

SWIFT    ?= swift
PACKAGES := python3 pkg-config liblz4-dev libblkid-dev zlib1g-dev e2fsprogs lz4 util-linux bsdutils mandoc qemu-utils fdisk time strace \
            nbdkit nbdkit-plugin-dev libnbd-bin python3-libnbd dpkg-dev man-db xz-utils lintian \
            qemu-system-x86 linux-image-cloud-amd64 busybox-static cpio fio systemd
DEMO_DIR ?= demo-out
PREFIX   ?= /usr/local
DESTDIR  ?=
# Release builds link the Swift runtime statically: installed tools run without a toolchain.
RELEASE  := $(SWIFT) build -c release --static-swift-stdlib

.PHONY: all deps build release test install-test install uninstall deb demo lint-man lint-swift vm-test bench fsck-expect fuzz hostile asan tsan clean

all: build

## deps: install missing system packages (apt-get, when run as root)
deps:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing packages:$$missing (run: sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(RELEASE)

## test: every test (unit, end to end, man page lint, install and package)
test: deps lint-man lint-swift
	$(SWIFT) build --build-tests
	$(SWIFT) test
	./scripts/install-test.sh

## install / uninstall: PREFIX (default /usr/local) and DESTDIR as usual; see scripts/install.sh
install: release
	PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) ./scripts/install.sh install $$($(RELEASE) --show-bin-path)

uninstall:
	PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) ./scripts/install.sh uninstall

## deb: the Debian package cbd-tools_VERSION_ARCH.deb in the current folder
deb: release
	./scripts/deb.sh $$($(RELEASE) --show-bin-path) .

## vm-test: boot a VM whose root filesystem is on a served CBD; also against raw and qcow2 (zstd)
vm-test: build
	bash Tests/vm/vm_test.sh $$($(SWIFT) build --show-bin-path) cbd raw qcow2

lint-man: deps
	mandoc -T lint -W warning man/*.[0-9]

## lint-swift: the project's style (.swift-format: 4 spaces, 120 columns), as swift-format
## (shipped with the toolchain) checks it; `swift format -i -r Sources Tests Package.swift Fuzz` fixes it
lint-swift:
	$(SWIFT) format lint --strict -r Sources Tests Package.swift Fuzz

## demo: build, then run the main job on a sample image
demo: release
	./scripts/demo.sh $(DEMO_DIR)

bench: release
	./bench/convert
	./bench/fsck

## fsck-expect: rewrite the expected outputs of the fsck corpus (review the diff!)
fsck-expect: build
	@for c in Tests/fsck/f_*; do \
	  BIN=$$($(SWIFT) build --show-bin-path) Tests/fsck/run_case.sh $$c /tmp/cbd-fsck-$$$$/$$(basename $$c) >/dev/null && \
	  cp /tmp/cbd-fsck-$$$$/$$(basename $$c)/out.1 $$c/expect.1 && cp /tmp/cbd-fsck-$$$$/$$(basename $$c)/out.2 $$c/expect.2; \
	done; rm -rf /tmp/cbd-fsck-$$$$

## fuzz: libFuzzer on each target for FUZZ_SECONDS (default 60) with a generated seed corpus;
## crashes land in .fuzz/crashes/TARGET (replay: CBD_FUZZ_TARGET=T .build/debug/cbd-fuzz FILE)
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= header entry volume fsck
fuzz: build
	$(SWIFT) build -c release --product cbd-fuzz --scratch-path .build-fuzz \
	  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING
	@[ -d .fuzz/seeds ] || ./scripts/fuzz-seeds.sh $$($(SWIFT) build --show-bin-path) .fuzz/seeds
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p .fuzz/corpus/$$t .fuzz/crashes/$$t; \
	  echo "== fuzzing $$t for $(FUZZ_SECONDS) s"; \
	  CBD_FUZZ_TARGET=$$t .build-fuzz/release/cbd-fuzz -max_total_time=$(FUZZ_SECONDS) -timeout=20 \
	    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=.fuzz/crashes/$$t/ \
	    .fuzz/corpus/$$t .fuzz/seeds/$$t 2>&1 | tail -12 || exit 1; \
	done

## hostile: damaged devices of an independent writer thrown at every tool (HOSTILE_SEEDS from HOSTILE_FIRST)
HOSTILE_FIRST ?= 1
HOSTILE_SEEDS ?= 100
hostile: build
	./scripts/hostile.py $$($(SWIFT) build --show-bin-path) $(HOSTILE_FIRST) $(HOSTILE_SEEDS)

## asan / tsan: the test suite under AddressSanitizer / ThreadSanitizer; tsan also runs the
## serve tests against the plugin built with ThreadSanitizer inside nbdkit (scripts/tsan-serve.sh)
asan: deps
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan
	LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/lsan.supp \
	CBD_BIN=$$($(SWIFT) build --scratch-path .build-asan --show-bin-path) $(SWIFT) test --sanitize=address --scratch-path .build-asan

tsan: deps
	$(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	# The tests that start cbd serve load the TSan plugin: nbdkit needs the runtime preloaded.
	CBD_BIN=$$($(SWIFT) build --scratch-path .build-tsan --show-bin-path) \
	  CBD_SERVE_PRELOAD="$$(./scripts/tsan-runtime.sh)" \
	  $(SWIFT) test --sanitize=thread --scratch-path .build-tsan --skip ServeTests
	./scripts/tsan-serve.sh   # the serve tests: nbdkit needs the TSan runtime preloaded for the plugin

clean:
	rm -rf .build .build-fuzz .build-asan .build-tsan .fuzz $(DEMO_DIR)

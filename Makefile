# Substrate — build, test, demo. `make help` lists targets.
SHELL := /bin/bash
BUN := node_modules/.bin/bun
TSC := node_modules/.bin/tsc

.PHONY: help setup build build-native test test-unit test-integration test-e2e typecheck demo bench release clean

help:
	@echo "setup         install Debian + npm dependencies (root, idempotent)"
	@echo "build         all six binaries into dist/ (cross targets included)"
	@echo "build-native  only this machine's agent + host binaries (what tests use)"
	@echo "test          typecheck + native build + the whole bun test suite"
	@echo "demo          build, start an agent, run commands in a world"
	@echo "bench         run every benchmark in bench/"
	@echo "release       VERSION=x.y.z: tarballs, SHA256SUMS, install.sh, Homebrew formula in dist/release"

setup:
	bash scripts/setup.sh

build:
	$(BUN) scripts/build.ts --all

build-native:
	$(BUN) scripts/build.ts --native

typecheck:
	$(TSC) --noEmit -p .

# The whole suite: unit, integration (real namespaces as root) and e2e (guest harness).
test: typecheck build-native
	@mkdir -p .tmp && bash scripts/check-leaks.sh --snapshot .tmp/leaks-before.txt
	set -o pipefail; $(BUN) test --timeout 120000 tests/ 2>&1 | tee .tmp/test.log
	bash scripts/check-leaks.sh --since .tmp/leaks-before.txt
	@# bun's own summary is " N pass" / " N fail"; end with the plain closing line CI reads.
	@awk '/^ *[0-9]+ pass$$/{p=$$1} /^ *[0-9]+ fail$$/{f=$$1} END{printf "tests: %d passed, %d failed\n", p, f}' .tmp/test.log

test-unit:
	$(BUN) test tests/unit

test-integration: build-native
	$(BUN) test --timeout 120000 tests/integration

test-e2e: build-native
	$(BUN) test --timeout 300000 tests/e2e

demo: build-native
	bash scripts/demo.sh

bench: build-native
	$(BUN) bench/run.ts

# Issue 9: built from `git archive HEAD` (committed code only); docs/RELEASE.md.
release:
	$(BUN) scripts/release.ts $(if $(VERSION),--version $(VERSION))

clean:
	rm -rf dist .tmp

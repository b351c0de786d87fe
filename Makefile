# breakglass: `make run` brings the local stack up, `make test` runs every test.
# Both install what they need; neither needs anything but Go, Node/npm and apt.

SHELL := /bin/bash
GO ?= go
CLAUDE_VERSION := 2.1.328
TOOLS := $(CURDIR)/.tools
CLAUDE := $(TOOLS)/node_modules/.bin/claude
# Static, reproducible binaries; the Dockerfiles use the same flags.
GOFLAGS_BUILD := -trimpath -ldflags=-s\ -w

.PHONY: all build run test test-go deps deps-apt deps-claude deps-ui bench fuzz soak mutate ui vet fmt clean

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/ ./cmd/...

# The local stack with the pinned claude CLI: chat works with only
# ANTHROPIC_API_KEY set. One readable line per event (-json for raw lines).
run: build deps-claude
	BREAKGLASS_CLAUDE_BIN=$(CLAUDE) ./bin/devstack $(RUN_FLAGS)

# ---- what the tests need -------------------------------------------------

deps: deps-apt deps-claude deps-ui

# Debian packages the tests drive for real: a stock sshd and the OpenSSH
# client tools, Chromium for the UI's end-to-end tests, prometheus for
# promtool (the alert rules' checks and fixtures in deploy/), and nginx as
# the forward-auth proxy in front of the web (internal/edgetest).
APT_PACKAGES := openssh-server openssh-client chromium prometheus nginx
deps-apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then \
	    echo "make: missing Debian packages:$$missing (run: apt-get install$$missing as root)"; exit 1; fi; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  echo "installing:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The pinned claude CLI, into .tools (never a global install).
deps-claude: $(CLAUDE)
$(CLAUDE):
	@command -v npm >/dev/null || { echo "make: npm is missing (install Node.js and npm)"; exit 1; }
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error @anthropic-ai/claude-code@$(CLAUDE_VERSION)
	@$(CLAUDE) --version | grep -q '^$(CLAUDE_VERSION) ' || { echo "make: claude CLI is not $(CLAUDE_VERSION)"; exit 1; }

deps-ui:
	@if [ -f ui/package-lock.json ]; then cd ui && npm ci --no-audit --no-fund --loglevel=error; fi

# ---- tests ----------------------------------------------------------------

export BREAKGLASS_TEST_CLAUDE := $(CLAUDE)

# Most tests wait on other processes (the claude CLI starting, a timeout
# running out, Chromium), so with go's default of one package per core
# two cores sit half idle: four packages run at once, the longest named
# first so that none is left running alone at the end. A package missing
# from the list still runs (./...); a name that no longer exists fails.
TEST_PARALLEL ?= 4
SLOW_PACKAGES := ./ui/ ./internal/systemtest/ ./cmd/web/ ./internal/pvegate/ ./internal/claude/ ./internal/sandbox/

# The binaries the tests run (internal/testing/testbin), compiled here
# once: test processes that start together would each compile them. The
# tests skip go test's own vet pass: make vet ran every analyzer.
TEST_BINARIES := ./cmd/... ./internal/redteam/probe ./internal/pvegate/testdata/fakeqm ./internal/claude/testdata/fakeclaude

test: deps vet
	CGO_ENABLED=0 $(GO) build $(TEST_BINARIES)
	$(GO) test -p $(TEST_PARALLEL) -race -count=1 -vet=off $(SLOW_PACKAGES) ./...
	@if [ -f ui/package.json ]; then cd ui && npm test; fi
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME)

# vet with -race compiles the packages the way `go test -race` does, so the
# tests reuse them (no file here is built only with or without race).
vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "make: gofmt needed"; exit 1; }
	$(GO) vet -race ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# One table: every performance figure with its target and its peer
# (cmd/benchtable runs the benchmarks one after the other). It needs
# the OpenSSH tools (deps-apt), the pinned claude CLI (deps-claude) for the
# figures that run it, and node for the UI's size report of the committed
# ui/dist; it exits non-zero when a figure misses its target.
bench: deps-apt deps-claude
	$(GO) run ./cmd/benchtable

# Every fuzz target of the module for FUZZTIME each, FUZZ_JOBS targets at
# once with the cores shared among them (cmd/fuzz: go test -fuzz takes one
# target per run, and most of a short run is go's start-up). It stops at
# the first failure and says which target failed; a failing input is saved
# under that package's testdata/fuzz/<target>/ and replays in every later
# `go test`. A run that fails without a failing input (the engine lost a
# worker on a starved machine) is tried once more; a real failure never is.
TEST_FUZZTIME ?= 3s
SOAK_FUZZTIME ?= 60s
FUZZTIME ?= $(TEST_FUZZTIME)
FUZZ_JOBS ?= 2
fuzz:
	$(GO) run ./cmd/fuzz -fuzztime $(FUZZTIME) -jobs $(FUZZ_JOBS)

# The long forms: the system tests' load and fault runs at full length
# (BREAKGLASS_SOAK=1, see internal/systemtest), then every fuzz target for
# longer.
soak: deps
	BREAKGLASS_SOAK=1 $(GO) test -race -count=1 -timeout 60m ./internal/systemtest/
	BREAKGLASS_SOAK=1 $(GO) test -count=1 -run '^TestBinaryStalledConnectionsBounded$$' ./cmd/keyholder/
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(SOAK_FUZZTIME)

# Mutation testing of the security checks (not part of make test): each
# one-line mutant of cmd/mutate/mutants.go is applied to a scratch copy of
# its file (go's -overlay; the tree is never edited) and its package's tests
# must fail, in under 15 s. Prints the kill ratio, the slowest kill and the
# survivors; exits non-zero unless every non-equivalent mutant is killed.
MUTATE_JOBS ?= 2
mutate: deps
	$(GO) run ./cmd/mutate -j $(MUTATE_JOBS)

ui:
	cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build

clean:
	rm -rf bin out

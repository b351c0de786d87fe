# breakglass: `make run` brings the local stack up, `make test` runs every test.
# Both install what they need; neither needs anything but Go, Node/npm and apt.

SHELL := /bin/bash
GO ?= go
CLAUDE_VERSION := 2.1.328
TOOLS := $(CURDIR)/.tools
CLAUDE := $(TOOLS)/node_modules/.bin/claude
# Static, reproducible binaries; the Dockerfiles use the same flags.
GOFLAGS_BUILD := -trimpath -ldflags=-s\ -w

.PHONY: all build run test test-go deps deps-apt deps-claude deps-ui bench fuzz soak ui vet fmt clean

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/ ./cmd/...

run: build
	./bin/devstack

# ---- what the tests need -------------------------------------------------

deps: deps-apt deps-claude deps-ui

# Debian packages the tests drive for real: a stock sshd and the OpenSSH
# client tools, and Chromium for the UI's end-to-end tests.
APT_PACKAGES := openssh-server openssh-client chromium
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

test: deps vet
	$(GO) test -race -count=1 ./...
	@if [ -f ui/package.json ]; then cd ui && npm test; fi

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "make: gofmt needed"; exit 1; }
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 30x -count 1 ./...

FUZZTIME ?= 10s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; done; done

soak:
	$(MAKE) fuzz FUZZTIME=2m

ui:
	cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build

clean:
	rm -rf bin out

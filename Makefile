# scc: serverless confidential containers.
# `make help` lists the targets.

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)

# Downloads and tools built once per machine (kernel package, containerd).
SCC_CACHE_DIR ?= /var/cache/scc
# The guest image (vmlinux, vmlinuz, initrd.img, manifest.json).
GUEST_DIR ?= $(CURDIR)/build/guest
CONTAINERD_VERSION := $(shell awk '$$1 == "github.com/containerd/containerd/v2" {print $$2}' go.mod)
CONTAINERD_BIN := $(SCC_CACHE_DIR)/containerd-$(CONTAINERD_VERSION)/bin
# crictl (and later critest), pinned by hack/tools/go.mod.
TOOLS_BIN := $(SCC_CACHE_DIR)/tools/bin
CRICTL := $(TOOLS_BIN)/crictl
# distribution's registry: critest's images and the guest pull tests.
REGISTRY := $(TOOLS_BIN)/registry
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

GO ?= go
GO_LDFLAGS := -X github.com/sccontainers/scc/shim.Version=$(VERSION)
# The agent is PID 1 of the guest initramfs: a static binary. runc's
# libcontainer needs cgo (nsenter), so it is linked statically with cgo.
AGENT_TAGS := netgo osusergo static_build seccomp

export SCC_CACHE_DIR GUEST_DIR CONTAINERD_BIN CRICTL REGISTRY

.PHONY: help deps build agent guest containerd tools protos check-protos test unit e2e demo bench lint clean

help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## Install what building and testing need (apt packages, containerd and crictl at pinned versions).
	hack/install-deps.sh
	$(MAKE) containerd tools

tools: $(CRICTL) $(REGISTRY) ## Build crictl and the registry at the versions hack/tools/go.mod pins.

$(CRICTL): hack/tools/go.mod
	mkdir -p $(TOOLS_BIN)
	cd hack/tools && $(GO) build -o $(TOOLS_BIN)/ sigs.k8s.io/cri-tools/cmd/crictl

containerd: $(CONTAINERD_BIN)/containerd ## Build containerd and ctr at the version go.mod pins.

$(CONTAINERD_BIN)/containerd: go.mod
	mkdir -p $(CONTAINERD_BIN)
	$(GO) build -o $(CONTAINERD_BIN)/ github.com/containerd/containerd/v2/cmd/containerd \
		github.com/containerd/containerd/v2/cmd/ctr github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2

build: agent ## Build bin/containerd-shim-scc-v2, bin/scc and bin/scc-agent.
	$(GO) build -ldflags '$(GO_LDFLAGS)' -o bin/ ./cmd/containerd-shim-scc-v2 ./cmd/scc

agent:
	CGO_ENABLED=1 $(GO) build -tags '$(AGENT_TAGS)' -ldflags '-s -w -extldflags "-static" $(GO_LDFLAGS)' -o bin/scc-agent ./cmd/scc-agent

guest: build ## Build the guest image (kernel from Debian's package, initramfs with the agent) into GUEST_DIR.
	bin/scc guest build --agent bin/scc-agent --cache $(SCC_CACHE_DIR) --out $(GUEST_DIR)

protos: ## Regenerate the agent and monitor APIs from api/*/v1/*.proto.
	$(GO) build -o bin/ github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc google.golang.org/protobuf/cmd/protoc-gen-go
	PATH=$(CURDIR)/bin:$$PATH protoc -I api -I /usr/include --go_out=api --go_opt=paths=source_relative \
		--go-ttrpc_out=api --go-ttrpc_opt=paths=source_relative api/*/v1/*.proto

check-protos: protos ## Fail if the committed generated code is stale.
	@git diff --exit-code -- api/ || (echo "generated code in api/ is stale: run make protos" && exit 1)

test: deps guest ## Run every test (unit and end-to-end against containerd and QEMU), and each fuzz target briefly.
	hack/fuzz.sh $(or $(FUZZTIME),3)
	SCC_BIN=$(CURDIR)/bin SCC_E2E_REQUIRED=1 $(GO) test -tags seccomp -count=1 -timeout 40m ./...

unit: ## Run the tests that need neither root nor QEMU images built.
	$(GO) test -short -count=1 ./...

e2e: build guest ## Run only the end-to-end tests.
	SCC_BIN=$(CURDIR)/bin SCC_E2E_REQUIRED=1 $(GO) test -count=1 -timeout 30m -v ./tests/...

demo: deps guest ## Run a container in a VM through a private containerd.
	SCC_BIN=$(CURDIR)/bin hack/demo.sh

bench: deps guest ## Cold/warm start, scale-out and idle memory of scc against runc; writes docs/performance.md, docs/bench.json, docs/bench.png.
	bin/scc bench --runs $(or $(RUNS),5) --containerd-bin $(CONTAINERD_BIN) --guest $(GUEST_DIR) \
		--json docs/bench.json --plot docs/bench.png --markdown docs/performance.md
	$(GO) test -run '^$$' -bench . -benchtime 200x ./vmm/qemu/ ./vmm/image/ ./attest/snp/measure/ ./attest/tdx/measure/ ./attest/verifier/
	$(GO) test -run '^$$' -bench SandboxStart -benchtime 5x ./shim/
	$(GO) test -run '^$$' -bench AgentRoundTrip -benchtime 200x ./shim/

lint: ## gofmt and go vet.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go') && exit 1)
	$(GO) vet ./...

clean: ## Remove build outputs.
	rm -rf bin build

# cri-tools' CRI validation suite and the registry it pulls its test
# images from, pinned by hack/tools/go.mod.
CRITEST := $(TOOLS_BIN)/critest
CRITEST_REPORT ?= $(CURDIR)/build/critest

.PHONY: critest

critest: build guest containerd $(CRITEST) $(REGISTRY) ## Run critest with the runc and scc handlers (long under TCG); reports in build/critest.
	SCC_BIN=$(CURDIR)/bin SCC_CRITEST=1 SCC_CRITEST_REPORT=$(CRITEST_REPORT) CRITEST=$(CRITEST) REGISTRY=$(REGISTRY) \
		$(GO) test -tags critest -count=1 -timeout 4h -v -run '^TestCritest$$' ./tests/critest/

$(CRITEST): hack/tools/go.mod
	mkdir -p $(TOOLS_BIN)
	cd hack/tools && $(GO) test -c -o $(CRITEST) sigs.k8s.io/cri-tools/cmd/critest

$(REGISTRY): hack/tools/go.mod
	mkdir -p $(TOOLS_BIN)
	cd hack/tools && $(GO) build -o $(TOOLS_BIN)/ github.com/distribution/distribution/v3/cmd/registry

# The Makefile is the CI contract: .ci/run calls `make test` (and `make fuzz`).
GO       ?= go
BIN      := bin
FUZZTIME ?= 15s
BENCHCOUNT ?= 6
RACE_PKGS := ./core/... ./policy/... ./wasm/... ./sdk/... ./cmd/... ./internal/...

.PHONY: all build containerd wasm-examples lint opa-test test unit e2e conformance fuzz bench bench-micro bench-dht demo clean image manifests deploy-test

all: build

# Static, trimmed, no symbol table: what the image ships and what the e2e
# tests run (internal/cluster.BuildSluice builds it the same way).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/sluice ./cmd/sluice

# containerd and ctr from the module pinned in go.mod (go tool directives).
containerd: $(BIN)/containerd $(BIN)/ctr
$(BIN)/containerd $(BIN)/ctr:
	$(GO) build -tags no_btrfs -o $(BIN)/ github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr

# Policy examples of the Go SDK, compiled to WebAssembly with the standard toolchain.
wasm-examples:
	@mkdir -p $(BIN)/wasm
	@for d in sdk/examples/*/; do n=$$(basename $$d); [ "$$n" = internal ] && continue; \
		echo "wasm $$n"; GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o $(BIN)/wasm/$$n.wasm ./$$d || exit 1; done

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

opa-test:
	$(GO) tool opa test policies/

# Everything: lint, the shipped policies under stock `opa test`, unit tests
# under the race detector, then the multi-node e2e with real containerd.
test: lint opa-test containerd wasm-examples unit e2e deploy-test

unit:
	$(GO) test -race -count=1 $(RACE_PKGS)

# One e2e package at a time (-p 1): the five-node rollout next to the
# hostile suite's 500 clients on 2 cores missed its first-byte budget.
e2e: containerd
	$(GO) test -p 1 -count=1 -timeout 20m ./e2e/...

conformance: containerd
	$(GO) test -count=1 -v ./e2e/conformance/

# Every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for p in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -h '^func Fuzz' $$p/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "fuzz $$p $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$p || exit 1; \
		done; done

# The DHT simulation at 100, 300 and 1000 in-process nodes (mocknet) and
# the re-provide cost of 10k keys, one by one vs swept (BENCHMARKS.md).
bench-dht:
	$(GO) test -run '^$$' -bench 'DHTSim$$|DHTReprovide' -benchtime 1x -timeout 60m -v ./core/routing/ | tee bench-dht.txt

# BENCHMARKS.md, regenerated (~20 min on 2 cores, as root): the netns peer
# path vs a plain file server, the ctr pull matrix, policy cost, RSS with
# 10k keys, the DHT simulation at BENCH_DHT_N nodes, and the PNG plots; all
# into $(BENCH_OUT). Shrink with SLUICE_BENCH_BLOB_MIB, SLUICE_BENCH_ROUNDS,
# SLUICE_BENCH_PULL_MB, SLUICE_BENCH_PULL_ROUNDS (e2e/bench/doc.go).
# BENCH_LOCK prefixes each heavy step (e.g. "flock /tmp/sluice-heavy.lock"
# on a shared machine).
BENCH_OUT   ?= e2e/bench/out
BENCH_DHT_N ?= 100|300
BENCH_LOCK  ?=
# $(call bench_run,command,output file): run, keep the output, print it
# without the upstream registry's access log, fail when the command did.
bench_run = $(BENCH_LOCK) $(1) > $(2) 2>&1; rc=$$?; grep -v 'msg="response completed"' $(2); exit $$rc
bench: build containerd
	@mkdir -p $(BENCH_OUT)
	@$(call bench_run,$(GO) test -run '^$$' -bench 'NetnsPeerBlob' -benchtime 1x -timeout 30m -v ./e2e/bench/,$(BENCH_OUT)/netns.txt)
	@$(call bench_run,$(GO) test -run '^$$' -bench 'CtrPull' -benchtime 1x -timeout 40m -v ./e2e/bench/,$(BENCH_OUT)/ctr.txt)
	@$(call bench_run,$(GO) test -run '^$$' -bench 'PullPolicyShare' -benchtime 3x ./policy/,$(BENCH_OUT)/policy-pull.txt)
	@$(call bench_run,$(GO) test -run '^$$' -bench 'Decide' -benchmem ./policy/ ./wasm/,$(BENCH_OUT)/policy-decide.txt)
	@$(call bench_run,$(GO) test -count=1 -run 'TestNode_RSSWith10kAdvertisedKeys' -v ./e2e/,$(BENCH_OUT)/rss.txt)
	@$(call bench_run,$(GO) test -count=1 -run 'TestRollout_FiveNodes' -v ./e2e/,$(BENCH_OUT)/rollout.txt)
	@$(call bench_run,$(GO) test -run '^$$' -bench 'DHTSim$$/N=($(BENCH_DHT_N))$$|DHTReprovide$$/N=($(BENCH_DHT_N))$$' -benchtime 1x -timeout 60m -v ./core/routing/,$(BENCH_OUT)/dht.txt)
	@$(call bench_run,$(GO) test -run '^$$' -bench 'DHTPlots' -benchtime 1x -v ./e2e/bench/,$(BENCH_OUT)/plots.txt)

# Micro-benchmarks for benchstat: make bench-micro; benchstat old.txt bench.txt
bench-micro:
	$(GO) test -run '^$$' -bench 'BlobGET|PeerBlob' -benchtime 20x -count $(BENCHCOUNT) ./core/registry/ ./core/mirror/ | tee bench.txt
	$(GO) test -run '^$$' -bench 'ManifestGET' -benchtime 2000x -count $(BENCHCOUNT) ./core/registry/ | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'Lookup|Advertise' -benchtime 1000x -count $(BENCHCOUNT) ./core/routing/ | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'Decide' -benchmem -count $(BENCHCOUNT) ./policy/ ./wasm/ | tee -a bench.txt

# The Helm chart, the plain manifests rendered from it and the dashboard,
# checked without a cluster; the image builder against a real containerd.
# A module of its own (deploy/go.mod): Helm stays out of the node's.
deploy-test: build containerd
	cd deploy && $(GO) test -count=1 ./...

# deploy/kubernetes/ from the chart, and the chart's copies of the
# dashboard and the shipped policies; deploy-test fails when stale.
manifests:
	cd deploy && $(GO) run ./cmd/manifests

# A reproducible OCI image (index for IMAGE_ARCHES, one layer holding the
# static /sluice, user 65532) as an OCI-layout tar for `ctr images import`
# or `sluice import`. No Docker: go-containerregistry, as ko does.
VERSION           ?= $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*/\1/p' deploy/helm/sluice/Chart.yaml)
IMAGE             ?= ghcr.io/sluice-oci/sluice:$(VERSION)
IMAGE_ARCHES      ?= amd64 arm64
SOURCE_DATE_EPOCH ?= 0
image:
	@for a in $(IMAGE_ARCHES); do echo "build linux/$$a"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -buildvcs=false \
			-ldflags '-s -w -X main.version=$(VERSION)' -o $(BIN)/image/linux_$$a/sluice ./cmd/sluice || exit 1; done
	cd deploy && $(GO) run ./cmd/imagebuild -name $(IMAGE) -created $(SOURCE_DATE_EPOCH) -o ../$(BIN)/sluice-image.tar \
		$(foreach a,$(IMAGE_ARCHES),linux/$(a)=../$(BIN)/image/linux_$(a)/sluice)

demo: build
	$(BIN)/sluice demo

clean:
	rm -rf $(BIN)

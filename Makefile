# The Makefile is the CI contract: .ci/run calls `make test` (and `make fuzz`).
GO       ?= go
BIN      := bin
FUZZTIME ?= 15s
BENCHCOUNT ?= 6
RACE_PKGS := ./core/... ./policy/... ./wasm/... ./sdk/... ./cmd/... ./internal/...

.PHONY: all build containerd wasm-examples lint opa-test test unit e2e conformance fuzz bench demo clean

all: build

build:
	$(GO) build -o $(BIN)/sluice ./cmd/sluice

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
test: lint opa-test containerd wasm-examples unit e2e

unit:
	$(GO) test -race -count=1 $(RACE_PKGS)

e2e: containerd
	$(GO) test -count=1 -timeout 20m ./e2e/...

conformance: containerd
	$(GO) test -count=1 -v ./e2e/conformance/

# Every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for p in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -h '^func Fuzz' $$p/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "fuzz $$p $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$p || exit 1; \
		done; done

# Benchmarks for benchstat: make bench; benchstat old.txt bench.txt
bench:
	$(GO) test -run '^$$' -bench 'BlobGET|PeerBlob' -benchtime 20x -count $(BENCHCOUNT) ./core/registry/ ./core/mirror/ | tee bench.txt
	$(GO) test -run '^$$' -bench 'ManifestGET' -benchtime 2000x -count $(BENCHCOUNT) ./core/registry/ | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'Lookup|Advertise' -benchtime 1000x -count $(BENCHCOUNT) ./core/routing/ | tee -a bench.txt
	$(GO) test -run '^$$' -bench 'Decide' -benchmem -count $(BENCHCOUNT) ./policy/ ./wasm/ | tee -a bench.txt

demo: build
	$(BIN)/sluice demo

clean:
	rm -rf $(BIN)

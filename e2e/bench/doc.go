// Package bench is the benchmark harness behind BENCHMARKS.md (issue 14):
// scenarios that start real sluice processes (bin/sluice), real containerd
// daemons and real registries, measure each against a baseline in the same
// run, and write their figures (text and markdown tables) and PNG plots
// (gonum/plot) into e2e/bench/out. They are Go benchmarks, so `go test
// ./e2e/...` (make e2e) runs only the smoke test of the network
// namespaces; `make bench` runs the scenarios:
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 60m ./e2e/bench/
//
// Environment knobs (for a quicker run): SLUICE_BENCH_BLOB_MIB (the netns
// blob, default 1024), SLUICE_BENCH_ROUNDS (default 10),
// SLUICE_BENCH_PULL_MB (the ctr matrix's image sizes in MB, comma
// separated, default 10,100,1000), SLUICE_BENCH_PULL_ROUNDS (default 5).
package bench

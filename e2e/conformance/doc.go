// Package conformance runs the OCI distribution-spec conformance suite
// (github.com/opencontainers/distribution-spec/conformance, pinned by a
// tool directive in go.mod) against real `sluice run` processes: one over
// an oci-layout directory, one over a real containerd. sluice is a
// read-only registry, so the suite runs in its pull-only mode over a
// generated image, one test branch at a time, and each branch must end
// with the suite's "OCI Conformance Result: Pass" line.
//
// The package has only tests; run it with `make conformance` (as root:
// the containerd case starts a real daemon).
package conformance

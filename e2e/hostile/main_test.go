// Package hostile runs a suite of hostile requests against a real `sluice
// run` process built with the race detector: traversal, absurd lengths,
// bad digests and ranges, oversized headers, slow and many clients,
// unmirrored registries and write methods. Every answer must be a 4xx
// (an OCI JSON error from sluice, or net/http's own refusal of a request
// it cannot parse) or a closed connection — never a 5xx, a panic or a data
// race — memory must stay bounded, and the node must still serve a valid
// pull afterwards.
package hostile

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// sluiceBin is a race-enabled sluice binary built for this suite.
var sluiceBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "sluice-hostile-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	sluiceBin = filepath.Join(dir, "sluice-race")
	cmd := exec.Command("go", "build", "-race", "-o", sluiceBin, "./cmd/sluice")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build sluice -race: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

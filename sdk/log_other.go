//go:build !wasip1

package sdk

import (
	"fmt"
	"os"
)

// Log writes msg to standard error; inside sluice (GOOS=wasip1) it goes
// to the host's log at level instead.
func Log(level Level, msg string) {
	fmt.Fprintf(os.Stderr, "sluice policy level=%d %s\n", level, msg)
}

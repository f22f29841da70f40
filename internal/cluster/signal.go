package cluster

import (
	"os"
	"time"
)

// Signal sends s to the node's process.
func (n *Node) Signal(s os.Signal) error { return n.cmd.Process.Signal(s) }

// Wait waits up to d for the process to exit and returns its exit code
// (-1 when a signal ended it); ok is false when it is still running.
func (n *Node) Wait(d time.Duration) (code int, ok bool) {
	select {
	case <-n.done:
		return n.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

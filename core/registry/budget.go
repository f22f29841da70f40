package registry

import (
	"net/http"
	"time"
)

// Transfer budgets: a response (or a fetch from peers) of n bytes may take
// BaseBudget plus n at MinTransferRate. Big blobs get the time they need on
// a slow link; a client that stalls a connection is cut off in proportion.
const (
	BaseBudget      = 30 * time.Second
	MinTransferRate = 256 << 10 // bytes per second
)

// TransferBudget is how long moving n bytes may take.
func TransferBudget(n int64) time.Duration {
	if n < 0 {
		n = 0
	}
	return BaseBudget + time.Duration(n/MinTransferRate)*time.Second
}

// setWriteDeadline bounds the time to write n bytes to the client.
func setWriteDeadline(w http.ResponseWriter, n int64) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(TransferBudget(n)))
}

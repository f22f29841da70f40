package registry

import (
	"testing"
	"time"
)

func TestTransferBudget(t *testing.T) {
	tests := []struct {
		n    int64
		want time.Duration
	}{
		{-1, BaseBudget},
		{0, BaseBudget},
		{MinTransferRate - 1, BaseBudget},
		{MinTransferRate * 10, BaseBudget + 10*time.Second},
		{1 << 30, BaseBudget + 4096*time.Second},
	}
	for _, tt := range tests {
		if got := TransferBudget(tt.n); got != tt.want {
			t.Errorf("TransferBudget(%d) = %s, want %s", tt.n, got, tt.want)
		}
	}
}

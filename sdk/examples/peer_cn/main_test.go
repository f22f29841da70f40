package main

import (
	"testing"

	"github.com/sluice-oci/sluice/sdk"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	data := map[string]any{"sluice": map[string]any{"peer_cn": map[string]any{"patterns": []any{"node-*", "edge-[0-9]"}}}}
	tests := []struct {
		name    string
		action  string
		peer    *sdk.Peer
		allowed bool
	}{
		{"match", sdk.ActionServe, &sdk.Peer{TLSSubject: "CN=node-7,O=sluice"}, true},
		{"second pattern", sdk.ActionServe, &sdk.Peer{TLSSubject: "O=sluice,CN=edge-3"}, true},
		{"no match", sdk.ActionServe, &sdk.Peer{TLSSubject: "CN=laptop"}, false},
		{"escaped comma is not a separator", sdk.ActionServe, &sdk.Peer{TLSSubject: `O=x\,CN=node-1,CN=evil`}, false},
		{"hex escape", sdk.ActionServe, &sdk.Peer{TLSSubject: `CN=node\2d9`}, true},
		{"no certificate", sdk.ActionServe, &sdk.Peer{ID: "12D3"}, false},
		{"no CN", sdk.ActionServe, &sdk.Peer{TLSSubject: "O=sluice"}, false},
		{"local containerd", sdk.ActionServe, nil, true},
		{"resolve not concerned", sdk.ActionResolve, &sdk.Peer{TLSSubject: "CN=laptop"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := decide(sdk.Input{Action: tt.action, Peer: tt.peer, Data: data})
			if d.Allow != tt.allowed {
				t.Errorf("decide = %+v, want allow=%v", d, tt.allowed)
			}
		})
	}
}

package deploy

import (
	"net"
	"strings"
	"testing"
)

// TestChart_MetricsAddrPodIP: --metrics-addr is built from the pod's IP
// ($(POD_IP), the node's on the host network); it must be a listen address
// Go accepts for an IPv4 node and for an IPv6 one (IPv6-only and
// IPv6-primary dual-stack clusters), and for the loopback values the
// chart documents.
func TestChart_MetricsAddrPodIP(t *testing.T) {
	for _, tc := range []struct {
		name, host, podIP, want string
	}{
		{"ipv4 node", "", "10.0.0.7", "10.0.0.7"},
		{"ipv6 node", "", "fd00:10::7", "fd00:10::7"},
		{"loopback v4", "127.0.0.1", "fd00:10::7", "127.0.0.1"},
		{"loopback v6", "[::1]", "10.0.0.7", "::1"},
		{"all addresses", "0.0.0.0", "10.0.0.7", "0.0.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var values map[string]any
			if tc.host != "" {
				values = map[string]any{"metrics": map[string]any{"host": tc.host}}
			}
			out, err := Render(chartDir, values)
			if err != nil {
				t.Fatal(err)
			}
			run := decodeStrict(t, out).daemonSet.Spec.Template.Spec.Containers[0]
			var addr string
			for _, a := range run.Args {
				if v, ok := strings.CutPrefix(a, "--metrics-addr="); ok {
					addr = strings.ReplaceAll(v, "$(POD_IP)", tc.podIP)
				}
			}
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				t.Fatalf("--metrics-addr %q with POD_IP %s: %v (sluice could not listen)", addr, tc.podIP, err)
			}
			if host != tc.want || port != "9090" {
				t.Errorf("--metrics-addr %q: host %q port %q, want %q 9090", addr, host, port, tc.want)
			}
		})
	}
}

package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseRunConfig_Validation(t *testing.T) {
	t.Parallel()
	writeConfig := func(t *testing.T, body string) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "sluice.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		args    []string
		config  string
		wantErr string
		check   func(t *testing.T, cfg *runConfig)
	}{
		{name: "max-peer-fetches zero", args: []string{"--max-peer-fetches", "0"}, wantErr: "--max-peer-fetches"},
		{name: "max-peer-fetches negative", args: []string{"--max-peer-fetches", "-3"}, wantErr: "--max-peer-fetches"},
		{name: "peer-rate-limit negative", args: []string{"--peer-rate-limit", "-1"}, wantErr: "--peer-rate-limit"},
		{name: "peer-fetch-parallel zero", args: []string{"--peer-fetch-parallel", "0"}, wantErr: "--peer-fetch-parallel"},
		{name: "peer-fetch-memory below two chunks", args: []string{"--peer-fetch-memory", "4MiB"}, wantErr: "--peer-fetch-memory"},
		{name: "peer-fetch-memory not a size", args: []string{"--peer-fetch-memory", "lots"}, wantErr: "peer-fetch-memory"},
		{name: "peer-fetch-memory default and size", args: []string{"--peer-fetch-memory", "256MiB"},
			check: func(t *testing.T, cfg *runConfig) {
				if cfg.PeerFetchMemory != 256<<20 || cfg.MaxPeerServes != 64 {
					t.Errorf("peer-fetch-memory %d, max-peer-serves %d; want 256 MiB, default 64", cfg.PeerFetchMemory, cfg.MaxPeerServes)
				}
			}},
		{name: "config peer-fetch-memory", config: "peer-fetch-memory: 64MiB\nmax-peer-serves: 0\n",
			check: func(t *testing.T, cfg *runConfig) {
				if cfg.PeerFetchMemory != 64<<20 || cfg.MaxPeerServes != 0 {
					t.Errorf("peer-fetch-memory %d, max-peer-serves %d; want 64 MiB, 0", cfg.PeerFetchMemory, cfg.MaxPeerServes)
				}
			}},
		{name: "max-peer-serves negative", args: []string{"--max-peer-serves", "-1"}, wantErr: "--max-peer-serves"},
		{name: "read-header-timeout zero", args: []string{"--read-header-timeout", "0s"}, wantErr: "--read-header-timeout"},
		{name: "resolve-timeout zero", args: []string{"--resolve-timeout", "0s"}, wantErr: "--resolve-timeout"},
		{name: "pprof on a reachable metrics listener", args: []string{"--pprof", "--metrics-addr", ":9090"}, wantErr: "--pprof"},
		{name: "pprof without metrics listener", args: []string{"--pprof", "--metrics-addr", ""}, wantErr: "--pprof"},
		{name: "pprof on loopback", args: []string{"--pprof", "--metrics-addr", "127.0.0.1:9090"},
			check: func(t *testing.T, cfg *runConfig) {
				if !cfg.Pprof {
					t.Error("--pprof not set")
				}
			}},
		{
			name: "config integer kept exact", config: "peer-rate-limit: 1000000\nmax-peer-fetches: 128\n",
			check: func(t *testing.T, cfg *runConfig) {
				if cfg.PeerRateLimit != 1000000 || cfg.MaxPeerFetches != 128 {
					t.Errorf("peer-rate-limit %d, max-peer-fetches %d; want 1000000, 128", cfg.PeerRateLimit, cfg.MaxPeerFetches)
				}
			},
		},
		{
			name: "config integer beyond float64 precision", config: "peer-rate-limit: 9007199254740993\n",
			check: func(t *testing.T, cfg *runConfig) {
				if cfg.PeerRateLimit != 9007199254740993 {
					t.Errorf("peer-rate-limit %d, want 9007199254740993", cfg.PeerRateLimit)
				}
			},
		},
		{
			name: "config list and duration", config: "bootstrap: [dns:a:5001, dns:b:5001]\nresolve-timeout: 50ms\npolicy-fail-open: true\n",
			check: func(t *testing.T, cfg *runConfig) {
				if len(cfg.Bootstrap) != 2 || cfg.ResolveTimeout.Milliseconds() != 50 || !cfg.PolicyFailOpen {
					t.Errorf("got bootstrap %v, resolve-timeout %s, fail-open %v", cfg.Bootstrap, cfg.ResolveTimeout, cfg.PolicyFailOpen)
				}
			},
		},
		{name: "config zero max-peer-fetches", config: "max-peer-fetches: 0\n", wantErr: "--max-peer-fetches"},
		{name: "config float for an integer flag", config: "max-peer-fetches: 1.5\n", wantErr: `"max-peer-fetches"`},
		// A repeated key would let a later line silently undo an earlier
		// one (an appended override dropping the verification key).
		{name: "config key given twice", config: "policy-verification-key: /etc/sluice/key.pem\nlog-level: info\npolicy-verification-key: \"\"\n", wantErr: `"policy-verification-key"`},
		// YAML 1.1 reads no/off/yes/on as booleans: a string flag must
		// not get "false" for node-name: no.
		{name: "config boolean for a string flag", config: "node-name: no\n", wantErr: `"node-name"`},
		{name: "config list for a single-value flag", config: "metrics-addr: [\":9090\", 127.0.0.1:9090]\n", wantErr: `"metrics-addr"`},
		{
			name: "config YAML boolean words for a boolean flag", config: "policy-fail-open: on\n",
			check: func(t *testing.T, cfg *runConfig) {
				if !cfg.PolicyFailOpen {
					t.Error("policy-fail-open: on did not set it")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := tt.args
			if tt.config != "" {
				args = append(args, "--config", writeConfig(t, tt.config))
			}
			cfg, err := parseRunConfig(args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, cfg)
			}
		})
	}
}

func TestRunConfig_StoreURI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sock := func(name string) string {
		p := filepath.Join(dir, name)
		ln, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return p
	}
	stock, k3s := sock("stock.sock"), sock("k3s.sock")
	missing := filepath.Join(dir, "missing.sock")
	plain := filepath.Join(dir, "plain.sock")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		store   string
		sockets []string
		want    string
		why     string
	}{
		{name: "flag wins", store: "oci:/x", sockets: []string{stock}, want: "oci:/x", why: "--store"},
		{name: "stock containerd", sockets: []string{stock, k3s}, want: "containerd://" + stock, why: "several"},
		{name: "k3s or rke2 only", sockets: []string{missing, k3s}, want: "containerd://" + k3s, why: k3s},
		{name: "regular file is no socket", sockets: []string{plain, k3s}, want: "containerd://" + k3s, why: k3s},
		{name: "none: embedded store", sockets: []string{missing}, want: "oci:" + filepath.Join("/data", "oci"), why: "embedded oci store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &runConfig{Store: tt.store, DataDir: "/data", sockets: tt.sockets}
			got, why := cfg.storeURI()
			if got != tt.want || !strings.Contains(why, tt.why) {
				t.Errorf("storeURI() = %q, %q; want %q and a reason naming %q", got, why, tt.want, tt.why)
			}
		})
	}
}

func TestContainerdSockets_K3sAndRKE2(t *testing.T) {
	t.Parallel()
	if !slices.Contains(containerdSockets(), "/run/k3s/containerd/containerd.sock") {
		t.Errorf("default sockets %v lack the k3s/RKE2 socket", containerdSockets())
	}
}

func TestHostIP(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		":5000": "", "0.0.0.0:5000": "", "[::]:5000": "", "localhost:5000": "",
		"127.0.0.2:5000": "127.0.0.2", "[fd00::7]:5000": "fd00::7",
	} {
		got := hostIP(addr)
		if (want == "" && got.IsValid()) || (want != "" && got.String() != want) {
			t.Errorf("hostIP(%q) = %v, want %q", addr, got, want)
		}
	}
}

func TestSoftMemoryLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    int64
		wantErr bool
	}{
		{"default: none", nil, 0, false},
		{"GOMEMLIMIT wins", map[string]string{"GOMEMLIMIT": "100MiB", "SLUICE_MEMORY_LIMIT": "134217728"}, 0, false},
		{"90% of the container limit", map[string]string{"SLUICE_MEMORY_LIMIT": "134217728"}, 134217728 / 10 * 9, false},
		{"empty is the default", map[string]string{"SLUICE_MEMORY_LIMIT": ""}, 0, false},
		{"not bytes", map[string]string{"SLUICE_MEMORY_LIMIT": "128Mi"}, 0, true},
		{"too small", map[string]string{"SLUICE_MEMORY_LIMIT": "1048576"}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := softMemoryLimit(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("softMemoryLimit = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "SLUICE_MEMORY_LIMIT") {
				t.Errorf("error %q does not name the variable", err)
			}
		})
	}
}

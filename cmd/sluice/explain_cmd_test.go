package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExplainCmd(t *testing.T) {
	regs := filepath.Join(t.TempDir(), "registries.yaml")
	if err := os.WriteFile(regs, []byte("mirrors:\n  docker.io:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"latest is not resolved", []string{"docker.io/library/nginx:latest"}, []string{"resolve   deny", "advertise deny", "serve     allow"}},
		{"listed registry is shared", []string{"--registries", regs, "nginx:1.27"}, []string{"resolve   allow", "advertise allow"}},
		{"unlisted registry is not", []string{"--registries", regs, "ghcr.io/org/app:1"}, []string{"resolve   deny", `"ghcr.io" is not in mirrors`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := explainCmd(t.Context(), tt.args, &out, &errOut); err != nil {
				t.Fatalf("%v: %s", err, errOut.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Fatalf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

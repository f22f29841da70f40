package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestSizeFlag_Set(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"10GiB", 10 << 30, false},
		{"512 MiB", 512 << 20, false},
		{"64KiB", 64 << 10, false},
		{"1048576", 1 << 20, false},
		{"7B", 7, false},
		{"", 0, true},
		{"-1GiB", 0, true},
		{"10GB", 0, true},
		{"99999999999TiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			var s sizeFlag
			err := s.Set(tt.in)
			if (err != nil) != tt.err || !tt.err && int64(s) != tt.want {
				t.Errorf("Set(%q) = %d, %v; want %d, error %v", tt.in, s, err, tt.want, tt.err)
			}
		})
	}
}

func TestParseRunConfig_Coalesce(t *testing.T) {
	t.Parallel()
	cfg, err := parseRunConfig([]string{"--coalesce", "--coalesce-spool-size", "2GiB", "--coalesce-ttl", "3m"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Coalesce.On || cfg.Coalesce.SpoolSize != 2<<30 || cfg.Coalesce.TTL != 3*time.Minute {
		t.Errorf("coalesce flags = %+v", cfg.Coalesce)
	}
	off, err := parseRunConfig(nil, io.Discard)
	if err != nil || off.Coalesce.On || off.Coalesce.SpoolSize != 10<<30 || off.Coalesce.TTL != 10*time.Minute {
		t.Errorf("defaults = %+v, %v", off.Coalesce, err)
	}
	if _, err := parseRunConfig([]string{"--coalesce-ttl", "0s"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--coalesce-ttl") {
		t.Errorf("a zero TTL: %v", err)
	}
}

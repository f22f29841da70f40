package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/sluice-oci/sluice/core/config"
	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/wasm"
)

// explainCmd: sluice explain [--policy P…] [--registries F] REF — what the
// node's policy decides for an image reference at every decision point.
func explainCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var lf loadFlags
	lf.register(fs)
	regs := fs.String("registries", "", "registries.yaml whose mirrors the node shares (default: all)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: usage: sluice explain [--policy PATH…] [--registries FILE] IMAGE-REF", errUsage)
	}
	ref, err := oci.ParseImageName(fs.Arg(0))
	if err != nil {
		return err
	}
	set, err := policy.Load(ctx, lf.paths, lf.options([]policy.Option{policy.WithWasm(wasm.Opener())})...)
	if err != nil {
		return err
	}
	defer set.Close()
	if *regs != "" {
		r, _, err := config.LoadRegistries(*regs)
		if err != nil {
			return err
		}
		set.SetMirrors(r.Mirrors())
	}
	tag := ref.Tag
	if tag == "" && ref.Digest == "" {
		tag = "latest"
	}
	fmt.Fprintf(stdout, "%s (policy revision %s)\n", ref.String(), set.Revision())
	for _, a := range policy.Actions {
		in := policy.Input{Reference: &policy.Reference{Registry: ref.Registry, Repository: ref.Repository,
			Tag: tag, Digest: ref.Digest.String(), Kind: policy.KindManifest}}
		if ref.Digest != "" {
			in.Reference.Tag = ""
		}
		d, err := set.Decide(ctx, a, in)
		if err != nil {
			return err
		}
		verdict := "allow"
		if !d.Allow {
			verdict = "deny"
		}
		fmt.Fprintf(stdout, "  %-9s %-5s %s\n", a, verdict, strings.Join(d.Reasons, "; "))
	}
	return nil
}

// statusCmd: sluice status [--metrics-addr URL] — a running node's status.
func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("metrics-addr", "http://127.0.0.1:9090", "the node's metrics address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	base := *addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/status", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("node status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("node status: %s", resp.Status)
	}
	var doc map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return errors.New("node status: not a sluice status document")
	}
	b, _ := json.MarshalIndent(doc, "", "  ")
	fmt.Fprintln(stdout, string(b))
	return nil
}

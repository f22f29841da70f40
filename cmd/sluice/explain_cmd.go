package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

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

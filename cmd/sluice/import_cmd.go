package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// importCmd: sluice import --store URI IMAGE.tar… — air-gap images into
// either store; into containerd they are labelled with their registry and
// pinned, as k3s does, so they are shared and never garbage-collected.
func importCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	uri := fs.String("store", "", "store URI: containerd:///run/containerd/containerd.sock or oci:DIR")
	ns := fs.String("containerd-namespace", "k8s.io", "containerd namespace")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *uri == "" || fs.NArg() == 0 {
		return errors.New("usage: sluice import --store URI IMAGE.tar…")
	}
	log, _ := newLogger("warn", "text", stderr)
	st, closeStore, err := openStore(ctx, *uri, *ns, log)
	if err != nil {
		return err
	}
	defer closeStore()
	imp, ok := st.(importer)
	if !ok {
		return fmt.Errorf("store %s cannot import", *uri)
	}
	for _, path := range fs.Args() {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		names, err := imp.Import(ctx, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for _, n := range names {
			fmt.Fprintf(stdout, "imported %s\n", n)
		}
	}
	return nil
}

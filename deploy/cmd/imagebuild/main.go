// Command imagebuild writes sluice's multi-platform OCI image as an
// OCI-layout tar from static binaries built beforehand (`make image`):
//
//	imagebuild -name ghcr.io/sluice-oci/sluice:0.1.0 -created 0 -o sluice.tar \
//	    linux/amd64=bin/image/linux_amd64/sluice linux/arm64=bin/image/linux_arm64/sluice
//
// It prints the image reference with the index digest.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/sluice-oci/sluice/deploy/imagebuild"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	name := fs.String("name", "", "image name with tag, e.g. ghcr.io/sluice-oci/sluice:0.1.0")
	created := fs.String("created", os.Getenv("SOURCE_DATE_EPOCH"), "creation time, Unix seconds (default $SOURCE_DATE_EPOCH, else 0)")
	out := fs.String("o", "sluice-image.tar", "output OCI-layout tar")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" || fs.NArg() == 0 {
		return fmt.Errorf("usage: imagebuild -name NAME:TAG [-created UNIX] [-o FILE] OS/ARCH=BINARY…")
	}
	epoch := int64(0)
	if *created != "" {
		n, err := strconv.ParseInt(*created, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("-created %q: want Unix seconds ≥ 0", *created)
		}
		epoch = n
	}
	var plats []imagebuild.Platform
	for _, a := range fs.Args() {
		p, err := imagebuild.ParsePlatform(a)
		if err != nil {
			return err
		}
		plats = append(plats, p)
	}
	t := time.Unix(epoch, 0)
	idx, err := imagebuild.Index(plats, t)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := imagebuild.WriteLayoutTar(&buf, idx, *name, t); err != nil {
		return err
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s: %s@%s\n", *out, *name, d)
	return nil
}

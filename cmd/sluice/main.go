// Command sluice is the node agent: it serves the node's containerd content
// read-only over the OCI distribution API, advertises it on a libp2p
// Kademlia DHT, and answers containerd's mirror requests from peers, with
// every decision passed through a policy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/wasm"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `sluice — a peer-to-peer, policy-driven OCI registry mirror

Usage:
  sluice run        serve this node's images and mirror through peers
  sluice import     import an OCI-layout or docker-save tar into a store
  sluice configure  write containerd hosts.toml files from registries.yaml
  sluice policy     eval | test | fmt policies
  sluice explain    what the policy decides for an image reference
  sluice status     a running node's status
  sluice doctor     check containerd reads sluice's hosts.toml and the node's ports answer
  sluice certs      init | issue | psk: a dev CA, node certificates, a PSK
  sluice demo       a local three-node cluster sharing an image
  sluice version    print the version

Run "sluice <command> -h" for the flags of a command.
`

func main() {
	ctx, stop := notifyContext(context.Background(), os.Stderr, os.Exit)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "sluice:", err)
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runCmd(ctx, rest, stdout, stderr)
	case "import":
		return importCmd(ctx, rest, stdout, stderr)
	case "configure":
		return configureCmd(ctx, rest, stdout, stderr)
	case "policy":
		return runPolicy(ctx, rest, stdout, stderr, policy.WithWasm(wasm.Opener()))
	case "explain":
		return explainCmd(ctx, rest, stdout, stderr)
	case "status":
		return statusCmd(ctx, rest, stdout, stderr)
	case "doctor":
		return doctorCmd(ctx, rest, stdout, stderr)
	case "demo":
		return demoCmd(ctx, rest, stdout, stderr)
	case "certs":
		return certsCmd(ctx, rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "sluice", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

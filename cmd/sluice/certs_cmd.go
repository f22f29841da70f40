package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/sluice-oci/sluice/internal/certs"
)

const certsUsage = `usage:
  sluice certs init  --dir DIR [--cn NAME] [--force]                 make a dev CA (ca.crt, ca.key 0600)
  sluice certs issue --dir DIR --name NODE [--ip IP…] [--dns NAME…]  sign NODE.crt/NODE.key (server and client)
  sluice certs psk   --out FILE [--force]                            write a 32-byte pre-shared key (hex, 0600)
A node then runs with --tls-cert DIR/NODE.crt --tls-key DIR/NODE.key
--client-ca DIR/ca.crt --peer-ca DIR/ca.crt, and --psk-file FILE.`

// certsCmd runs `sluice certs …`: a development CA, node certificates for
// mTLS between nodes, and a PSK for the libp2p private network.
func certsCmd(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, certsUsage)
		return fmt.Errorf("%w: sluice certs needs a subcommand", errUsage)
	}
	switch args[0] {
	case "init":
		return certsInit(args[1:], stdout, stderr)
	case "issue":
		return certsIssue(args[1:], stdout, stderr)
	case "psk":
		return certsPSK(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, certsUsage)
		return nil
	}
	fmt.Fprintln(stderr, certsUsage)
	return fmt.Errorf("%w: unknown certs subcommand %q", errUsage, args[0])
}

func certsFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice certs "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseNoArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %v", errUsage, fs.Args())
	}
	return nil
}

func certsInit(args []string, stdout, stderr io.Writer) error {
	fs := certsFlags("init", stderr)
	dir := fs.String("dir", "", "directory for ca.crt and ca.key (created 0700)")
	cn := fs.String("cn", "sluice dev CA", "common name of the CA")
	force := fs.Bool("force", false, "replace an existing CA (every node certificate must be reissued)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("%w: --dir is required", errUsage)
	}
	ca, err := certs.Init(*dir, *cn, *force)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "CA %q written to %s/%s (key %s/%s, mode 0600), valid until %s\n",
		ca.Cert.Subject.CommonName, *dir, certs.CAFile, *dir, certs.CAKeyFile, ca.Cert.NotAfter.Format("2006-01-02"))
	return nil
}

func certsIssue(args []string, stdout, stderr io.Writer) error {
	fs := certsFlags("issue", stderr)
	dir := fs.String("dir", "", "directory of the CA; NAME.crt and NAME.key are written there")
	name := fs.String("name", "", "node name: the certificate's CN and a DNS SAN")
	var ipList, dnsList listFlag
	fs.Var(&ipList, "ip", "IP address SAN (repeatable or comma separated)")
	fs.Var(&dnsList, "dns", "extra DNS SAN (repeatable or comma separated)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *dir == "" || *name == "" {
		return fmt.Errorf("%w: --dir and --name are required", errUsage)
	}
	var ips []net.IP
	for _, s := range splitList(ipList) {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("%w: --ip %q is not an IP address", errUsage, s)
		}
		ips = append(ips, ip)
	}
	n, err := certs.IssueFiles(*dir, *name, ips, splitList(dnsList))
	if err != nil {
		return err
	}
	certPath, keyPath := certs.Paths(*dir, *name)
	var sans []string
	for _, ip := range n.Cert.IPAddresses {
		sans = append(sans, "IP:"+ip.String())
	}
	for _, d := range n.Cert.DNSNames {
		sans = append(sans, "DNS:"+d)
	}
	fmt.Fprintf(stdout, "%s: subject %q, SANs %s, valid until %s\n%s: key (mode 0600)\n",
		certPath, n.Cert.Subject.String(), strings.Join(sans, ","), n.Cert.NotAfter.Format("2006-01-02"), keyPath)
	return nil
}

func certsPSK(args []string, stdout, stderr io.Writer) error {
	fs := certsFlags("psk", stderr)
	out := fs.String("out", "", "file to write the key to (mode 0600)")
	force := fs.Bool("force", false, "overwrite an existing file")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("%w: --out is required", errUsage)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if *force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(*out, flags, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists (use --force to replace it)", *out)
		}
		return err
	}
	if err := f.Chmod(0o600); err != nil { // --force over a looser file
		f.Close()
		return err
	}
	if _, err := fmt.Fprintln(f, hex.EncodeToString(key)); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "32-byte pre-shared key written to %s (hex, mode 0600)\n", *out)
	return nil
}

// splitList flattens repeatable, comma-separated flag values.
func splitList(l []string) []string {
	var out []string
	for _, v := range l {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/sluice-oci/sluice/core/config"
)

// configureCmd is `sluice configure`: it writes containerd's hosts.toml for
// every registry mirrored in registries.yaml, or puts the backup back with
// --restore.
func configureCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("configure", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		registries = fs.String("registries", "/etc/rancher/k3s/registries.yaml", "k3s/RKE2 `registries.yaml` whose mirrors are configured")
		hostsDir   = fs.String("hosts-dir", config.DefaultHostsDir, "containerd hosts `directory` (config_path)")
		mirror     = fs.String("mirror", "http://127.0.0.1:5000", "`URL` of the local sluice, tried first")
		disable    = fs.Bool("disable-default-endpoint", false, "never fall back to the upstream registry")
		dryRun     = fs.Bool("dry-run", false, "print the diff, change nothing")
		restore    = fs.Bool("restore", false, "put back the files sluice replaced and remove the ones it added")
		dial       = fs.Duration("dial-timeout", config.DefaultDialTimeout, "containerd's dial timeout for the local sluice")
		mirrorCA   = fs.String("mirror-ca", "", "CA `file` containerd uses to verify an https --mirror")
		mirrorCert = fs.String("mirror-cert", "", "client certificate `file` containerd presents to an https --mirror")
		mirrorKey  = fs.String("mirror-key", "", "client key `file` for --mirror-cert")
	)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sluice configure --registries FILE --hosts-dir DIR --mirror URL [--disable-default-endpoint] [--dry-run] [--restore]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("configure: unexpected arguments %q", fs.Args())
	}
	if *hostsDir == "" {
		return errors.New("configure: --hosts-dir is empty")
	}

	var (
		ch  config.Changes
		err error
	)
	if *restore {
		ch, err = config.RestoreHosts(ctx, *hostsDir, *dryRun)
	} else {
		reg, warnings, lerr := config.LoadRegistries(*registries)
		for _, w := range warnings {
			fmt.Fprintln(stderr, "warning:", w)
		}
		if lerr != nil {
			return fmt.Errorf("configure: %w", lerr)
		}
		tls, terr := mirrorTLS(*mirrorCA, *mirrorCert, *mirrorKey)
		if terr != nil {
			return fmt.Errorf("configure: %w", terr)
		}
		ch, err = config.WriteHosts(ctx, config.HostsOptions{
			Registries:             reg,
			HostsDir:               *hostsDir,
			Mirror:                 *mirror,
			MirrorTLS:              tls,
			DisableDefaultEndpoint: *disable,
			DialTimeout:            *dial,
			DryRun:                 *dryRun,
		})
	}
	if err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	for _, w := range ch.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	report(stdout, *hostsDir, ch, *dryRun)
	return nil
}

// mirrorTLS makes the --mirror-* paths absolute: containerd resolves
// relative paths against each host directory.
func mirrorTLS(ca, cert, key string) (config.TLSConfig, error) {
	if key != "" && cert == "" {
		return config.TLSConfig{}, errors.New("--mirror-key needs --mirror-cert")
	}
	out := config.TLSConfig{}
	for _, f := range []struct {
		in  string
		out *string
	}{{ca, &out.CAFile}, {cert, &out.CertFile}, {key, &out.KeyFile}} {
		if f.in == "" {
			continue
		}
		abs, err := filepath.Abs(f.in)
		if err != nil {
			return config.TLSConfig{}, err
		}
		*f.out = abs
	}
	return out, nil
}

func report(w io.Writer, dir string, ch config.Changes, dryRun bool) {
	if dryRun {
		if ch.Diff == "" {
			fmt.Fprintf(w, "%s: no changes\n", dir)
			return
		}
		fmt.Fprint(w, ch.Diff)
		return
	}
	for _, p := range ch.BackedUp {
		fmt.Fprintf(w, "backed up %s to %s\n", filepath.Join(dir, p), filepath.Join(dir, config.BackupDir))
	}
	for _, p := range ch.Written {
		fmt.Fprintf(w, "wrote %s\n", filepath.Join(dir, p))
	}
	for _, p := range ch.Removed {
		fmt.Fprintf(w, "removed %s\n", filepath.Join(dir, p))
	}
	if ch.Empty() {
		fmt.Fprintf(w, "%s: no changes\n", dir)
	}
}

// Command manifests regenerates what deploy/ derives from other files: the
// chart's copies of the dashboard and the shipped policies, and the plain
// manifests in deploy/kubernetes/ rendered from the chart (`make manifests`).
// Run it in the deploy directory.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/sluice-oci/sluice/deploy"
)

func main() {
	root := flag.String("root", "..", "repository root")
	flag.Parse()
	if err := run(*root); err != nil {
		fmt.Fprintln(os.Stderr, "manifests:", err)
		os.Exit(1)
	}
}

func run(root string) error {
	dashboard, policies, err := deploy.Sources(root)
	if err != nil {
		return err
	}
	deployDir := filepath.Join(root, "deploy")
	// Stale policy copies would otherwise linger in the chart.
	old, err := filepath.Glob(filepath.Join(deployDir, "helm", "sluice", "files", "policies", "*.rego"))
	if err != nil {
		return err
	}
	for _, p := range old {
		if _, ok := policies[filepath.Base(p)]; !ok {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
	}
	// The chart's copies go first: a render reads them.
	for name, b := range policies {
		if err := os.WriteFile(filepath.Join(deployDir, "helm", "sluice", "files", "policies", name), b, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(deployDir, "helm", "sluice", "files", "grafana", "sluice.json"), dashboard, 0o644); err != nil {
		return err
	}
	gen, err := deploy.Generated(deployDir, dashboard, policies)
	if err != nil {
		return err
	}
	paths := make([]string, 0, len(gen))
	for p := range gen {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		full := filepath.Join(deployDir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, gen[p], 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", filepath.Join("deploy", p))
	}
	return nil
}

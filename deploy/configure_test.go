package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestChart_ConfigureDryRun runs the init container's `sluice configure`
// with the real binary (bin/sluice, make build) in --dry-run against a temp
// hosts directory: the chart's registries.yaml parses and the arguments are
// accepted as they are written.
func TestChart_ConfigureDryRun(t *testing.T) {
	sluice, err := filepath.Abs("../bin/sluice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sluice); err != nil {
		t.Fatalf("%v (run make build, or make deploy-test)", err)
	}
	for _, tc := range chartCases() {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Render(chartDir, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			o := decodeStrict(t, out)
			init := o.daemonSet.Spec.Template.Spec.InitContainers[0]
			dir := t.TempDir()
			regFile := filepath.Join(dir, "registries.yaml")
			reg := "mirrors:\n  docker.io: {}\n" // a node's file (hostPath presets)
			for _, cm := range o.configMaps {
				if b, ok := cm.Data["registries.yaml"]; ok {
					reg = b
				}
			}
			if err := os.WriteFile(regFile, []byte(reg), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"configure", "--dry-run"}
			for _, a := range init.Args[1:] {
				switch {
				case strings.HasPrefix(a, "--registries="):
					a = "--registries=" + regFile
				case strings.HasPrefix(a, "--hosts-dir="):
					a = "--hosts-dir=" + filepath.Join(dir, "certs.d")
				}
				args = append(args, a)
			}
			b, err := exec.CommandContext(t.Context(), sluice, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, b)
			}
			mirror := ""
			for _, a := range init.Args {
				if v, ok := strings.CutPrefix(a, "--mirror="); ok {
					mirror = v
				}
			}
			if mirror == "" || !strings.Contains(string(b), mirror) {
				t.Fatalf("configure --dry-run wrote no host for %s:\n%s", mirror, b)
			}
		})
	}
}

package sdk_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDeps checks that the SDK and its examples import only the standard
// library and the SDK itself, for the host and for GOOS=wasip1.
func TestDeps(t *testing.T) {
	t.Parallel()
	const sdkPath = "github.com/sluice-oci/sluice/sdk"
	for _, env := range [][]string{nil, {"GOOS=wasip1", "GOARCH=wasm"}} {
		cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./...")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v %s: %v", env, cmd, err)
		}
		for _, pkg := range strings.Fields(string(out)) {
			if pkg != sdkPath && !strings.HasPrefix(pkg, sdkPath+"/") {
				t.Errorf("%v: the sdk depends on %s; it may import only the standard library and itself", env, pkg)
			}
		}
	}
}

package conformance_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-oci/sluice/internal/ctrtest"
)

// suitePkg is the conformance suite. Since its 2025 rewrite it is a main
// package (built with `go build`; `go test -c` still works but runs it in a
// deprecated "legacy" mode), configured by OCI_* variables.
const suitePkg = "github.com/opencontainers/distribution-spec/conformance"

// buildSuite builds the suite once per test binary into <repo>/bin, at the
// version go.mod pins.
var buildSuite = sync.OnceValues(func() (string, error) {
	bin, err := ctrtest.RepoBin()
	if err != nil {
		return "", err
	}
	out := filepath.Join(bin, "oci-conformance")
	cmd := exec.Command("go", "build", "-o", out, suitePkg)
	cmd.Dir = filepath.Dir(bin)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", suitePkg, err, b)
	}
	return out, nil
})

// roData is the preloaded content the suite pulls (sluice cannot be pushed
// to): tags and manifest digests of one image, and its blob digests.
type roData struct {
	Tags, Manifests, Blobs []string
}

// branches are the suite's top-level tests that exercise a pull-only
// registry, run one at a time with OCI_FILTER_TEST. Left out, because with
// push, tag listing and referrers off they only report Disabled (and the
// blob branches then panic while writing results.yaml): "empty",
// "sha256 blobs", "sha512 blobs". An unfiltered run panics the same way
// after printing its result, so its exit status means nothing.
var branches = []string{
	"ping",
	"read-only",             // HEAD and GET of the preloaded tag, manifests and blobs
	"missing-manifest",      // 404 for an unknown digest and an unknown tag
	"invalid-digest-format", // GET of manifests/sha256:baddigeststring is 400 or 404
}

// suiteResult is what one suite run printed.
type suiteResult struct {
	Result string // the word after "OCI Conformance Result:"
	Counts map[string]int
	Output string
	Err    error // the process's exit status
}

var (
	resultLine = regexp.MustCompile(`(?m)^OCI Conformance Result: (\S+)\s*$`)
	countLine  = regexp.MustCompile(`(?m)^  (Disabled|Skip|Pass|FAIL|Error)\.*:\s+(\d+)\s*$`)
)

// runSuite runs one branch of the suite against registry (host:port, plain
// HTTP) in a fresh working directory (it writes results/ there and would
// read an oci-conformance.yaml from it).
func runSuite(ctx context.Context, suite, workDir, registry, repo, branch string, data roData) suiteResult {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite)
	cmd.Dir = workDir
	cmd.Env = suiteEnv(map[string]string{
		"OCI_REGISTRY":      registry,
		"OCI_TLS":           "disabled",
		"OCI_REPO1":         repo,
		"OCI_REPO2":         repo,
		"OCI_VERSION":       "1.1",
		"OCI_LOG":           "warn",
		"OCI_RESULTS_DIR":   filepath.Join(workDir, "results"),
		"OCI_FILTER_TEST":   "OCI Conformance Test/" + branch,
		"OCI_API_PULL":      "true",
		"OCI_API_PUSH":      "false",
		"OCI_API_REFERRER":  "false",
		"OCI_API_TAGS_LIST": "false",
		// Deletes are off; the atomic flags only matter for deletes.
		"OCI_API_BLOBS_DELETE":          "false",
		"OCI_API_BLOBS_MOUNT_ANONYMOUS": "false",
		"OCI_API_MANIFESTS_DELETE":      "false",
		"OCI_API_TAGS_DELETE":           "false",
		"OCI_RO_DATA_TAGS":              strings.Join(data.Tags, " "),
		"OCI_RO_DATA_MANIFESTS":         strings.Join(data.Manifests, " "),
		"OCI_RO_DATA_BLOBS":             strings.Join(data.Blobs, " "),
	})
	out, err := cmd.CombinedOutput()
	res := suiteResult{Output: string(out), Err: err, Counts: map[string]int{}}
	if m := resultLine.FindStringSubmatch(res.Output); m != nil {
		res.Result = m[1]
	}
	for _, m := range countLine.FindAllStringSubmatch(res.Output, -1) {
		n, _ := strconv.Atoi(m[2])
		res.Counts[m[1]] = n
	}
	return res
}

// suiteEnv is the test's environment without any OCI_* variable a
// developer may have exported, plus set.
func suiteEnv(set map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OCI_") {
			env = append(env, kv)
		}
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return env
}

package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Sources reads what the chart copies from the repository rooted at root:
// the Grafana dashboard (deploy/grafana/sluice.json) and the shipped Rego
// policies (policies/*.rego without the tests).
func Sources(root string) (dashboard []byte, policies map[string][]byte, err error) {
	dashboard, err = os.ReadFile(filepath.Join(root, "deploy", "grafana", "sluice.json"))
	if err != nil {
		return nil, nil, err
	}
	paths, err := filepath.Glob(filepath.Join(root, "policies", "*.rego"))
	if err != nil {
		return nil, nil, err
	}
	policies = map[string][]byte{}
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.rego") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		policies[filepath.Base(p)] = b
	}
	if len(policies) == 0 {
		return nil, nil, fmt.Errorf("no policies in %s", filepath.Join(root, "policies"))
	}
	return dashboard, policies, nil
}

package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
)

// MetricNames returns the Prometheus metric names the Go source under root
// defines: every `Name: "sluice_…"` field of a composite literal (the
// prometheus.*Opts of core/metrics, policy, routing and wasm), outside
// tests, with a histogram's names (_bucket, _sum, _count) added.
func MetricNames(root string) (map[string]bool, error) {
	names := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "testdata", "deploy", "e2e", "bin", ".git", "node_modules":
				if p != root {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			cl, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			histogram := false
			if sel, ok := cl.Type.(*ast.SelectorExpr); ok && strings.HasPrefix(sel.Sel.Name, "Histogram") {
				histogram = true
			}
			for _, e := range cl.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				if k, ok := kv.Key.(*ast.Ident); !ok || k.Name != "Name" {
					continue
				}
				lit, ok := kv.Value.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				name, err := strconv.Unquote(lit.Value)
				if err != nil || !strings.HasPrefix(name, "sluice_") {
					continue
				}
				names[name] = true
				if histogram {
					for _, s := range []string{"_bucket", "_sum", "_count"} {
						names[name+s] = true
					}
				}
			}
			return true
		})
		return nil
	})
	return names, err
}

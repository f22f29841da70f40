package deploy

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
)

// FlagKind is how a flag takes its value.
type FlagKind int

// Flag kinds, from the flag.FlagSet method that defines the flag.
const (
	FlagString FlagKind = iota
	FlagBool
	FlagDuration
	FlagInt
	FlagValue // fs.Var: a custom (here: repeatable list) value
)

// flagMethods maps a flag.FlagSet method to the kind it defines and the
// index of its name argument.
var flagMethods = map[string]struct {
	kind FlagKind
	arg  int
}{
	"String": {FlagString, 0}, "StringVar": {FlagString, 1},
	"Bool": {FlagBool, 0}, "BoolVar": {FlagBool, 1},
	"Duration": {FlagDuration, 0}, "DurationVar": {FlagDuration, 1},
	"Int": {FlagInt, 0}, "IntVar": {FlagInt, 1}, "Int64": {FlagInt, 0}, "Int64Var": {FlagInt, 1},
	"Uint": {FlagInt, 0}, "UintVar": {FlagInt, 1}, "Uint64": {FlagInt, 0}, "Uint64Var": {FlagInt, 1},
	"Var": {FlagValue, 1}, "Func": {FlagValue, 0}, "TextVar": {FlagValue, 1},
}

// CommandFlags reads the flags a function of the sluice command defines
// (runFlags for `sluice run`, configureCmd for `sluice configure`) from the
// source in dir (cmd/sluice), so the chart is checked against the flags the
// binary built from the same tree accepts, without building it.
func CommandFlags(dir, funcName string) (map[string]FlagKind, error) {
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv != nil || fd.Name.Name != funcName || fd.Body == nil {
				continue
			}
			flags := map[string]FlagKind{}
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				m, ok := flagMethods[sel.Sel.Name]
				if !ok || len(call.Args) <= m.arg {
					return true
				}
				lit, ok := call.Args[m.arg].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				name, err := strconv.Unquote(lit.Value)
				if err == nil {
					flags[name] = m.kind
				}
				return true
			})
			if len(flags) == 0 {
				return nil, fmt.Errorf("%s: %s defines no flags", p, funcName)
			}
			return flags, nil
		}
	}
	return nil, fmt.Errorf("no function %s in %s", funcName, dir)
}

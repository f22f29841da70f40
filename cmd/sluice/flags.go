package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// applyEnvAndFile fills flags the command line did not set: first from the
// environment (SLUICE_<FLAG>, dashes as underscores; lists comma
// separated), then from the YAML file named by the "config" flag (same
// keys as the flags). Precedence: flag > env > file > default.
func applyEnvAndFile(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || envErr != nil {
			return
		}
		v, ok := os.LookupEnv("SLUICE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")))
		if !ok {
			return
		}
		if err := setValue(fs, f, v); err != nil {
			envErr = fmt.Errorf("environment SLUICE_%s: %w", strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")), err)
			return
		}
		set[f.Name] = true
	})
	if envErr != nil {
		return envErr
	}
	cf := fs.Lookup("config")
	if cf == nil || cf.Value.String() == "" {
		return nil
	}
	path := cf.Value.String()
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	for k, v := range doc {
		f := fs.Lookup(k)
		if f == nil || k == "config" {
			return fmt.Errorf("config file %s: unknown key %q (keys are the flag names of sluice run)", path, k)
		}
		if set[k] {
			continue
		}
		var vals []string
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				vals = append(vals, fmt.Sprint(e))
			}
		case nil:
			continue
		default:
			vals = []string{fmt.Sprint(x)}
		}
		for _, s := range vals {
			if err := fs.Set(k, s); err != nil {
				return fmt.Errorf("config file %s: key %q: %w", path, k, err)
			}
		}
	}
	return nil
}

func setValue(fs *flag.FlagSet, f *flag.Flag, v string) error {
	if _, ok := f.Value.(*listFlag); ok {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				if err := fs.Set(f.Name, s); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return fs.Set(f.Name, v)
}

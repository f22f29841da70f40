package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
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
	doc, err := decodeConfig(b)
	if err != nil {
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
		_, isList := f.Value.(*listFlag)
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); (!ok || !b.IsBoolFlag()) && isBool(v) {
			// YAML reads no, off, yes and on as booleans.
			return fmt.Errorf("config file %s: key %q: a boolean for a flag that takes text; quote the value", path, k)
		}
		switch x := v.(type) {
		case []any:
			if !isList {
				return fmt.Errorf("config file %s: key %q: a list for a flag that takes one value", path, k)
			}
			for _, e := range x {
				s, err := scalarString(e)
				if err != nil {
					return fmt.Errorf("config file %s: key %q: %w", path, k, err)
				}
				vals = append(vals, s)
			}
		case nil:
			continue
		default:
			s, err := scalarString(x)
			if err != nil {
				return fmt.Errorf("config file %s: key %q: %w", path, k, err)
			}
			vals = []string{s}
		}
		for _, s := range vals {
			if err := fs.Set(k, s); err != nil {
				return fmt.Errorf("config file %s: key %q: value %q: %w", path, k, s, err)
			}
		}
	}
	return nil
}

// decodeConfig parses the YAML config file into flag name → value. Numbers
// stay the literal text of the file (json.Number), so 1000000 is set as
// "1000000" and not as float64's "1e+06", and integers beyond 2^53 keep
// every digit.
func decodeConfig(b []byte) (map[string]any, error) {
	// Strict: a key given twice is an error, not a silent override.
	j, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("want a mapping of flag names to values: %w", err)
	}
	return doc, nil
}

func isBool(v any) bool {
	if l, ok := v.([]any); ok {
		for _, e := range l {
			if isBool(e) {
				return true
			}
		}
		return false
	}
	_, ok := v.(bool)
	return ok
}

// scalarString is the flag value of a config scalar.
func scalarString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	}
	return "", fmt.Errorf("want a string, number, boolean or list of them, got %T", v)
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

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"sigs.k8s.io/yaml"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/policy/policytest"
)

const policyUsage = `usage:
  sluice policy eval --policy PATH… --action A --input FILE|-   print {"allow":…,"reasons":[…]}
  sluice policy test [--policy PATH…] CASES.yaml…               run a case table
  sluice policy fmt [-w] FILE.rego…                             format Rego (rego.v1)
With no --policy, the shipped policies (mirrors + latest) are used.`

// errUsage marks command-line mistakes (main prints usage, exit 2).
var errUsage = errors.New("usage error")

// policyCmd runs `sluice policy …`.
func policyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runPolicy(ctx, args, stdout, stderr)
}

// runPolicy is policyCmd with extra Load options (main adds
// policy.WithWasm so .wasm paths work).
func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer, extra ...policy.Option) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, policyUsage)
		return fmt.Errorf("%w: sluice policy needs a subcommand", errUsage)
	}
	switch args[0] {
	case "eval":
		return policyEval(ctx, args[1:], stdout, stderr, extra)
	case "test":
		return policyTest(ctx, args[1:], stdout, stderr, extra)
	case "fmt":
		return policyFmt(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, policyUsage)
		return nil
	}
	fmt.Fprintln(stderr, policyUsage)
	return fmt.Errorf("%w: unknown policy subcommand %q", errUsage, args[0])
}

type loadFlags struct {
	paths    listFlag
	key      string
	failOpen bool
}

func (l *loadFlags) register(fs *flag.FlagSet) {
	fs.Var(&l.paths, "policy", "policy path: directory, .rego, data file, bundle .tar.gz or .wasm (repeatable)")
	fs.StringVar(&l.key, "policy-verification-key", "", "public key (PEM) that OPA bundles must be signed with")
	fs.BoolVar(&l.failOpen, "policy-fail-open", false, "treat policy engine errors as allow")
}

func (l *loadFlags) options(extra []policy.Option) []policy.Option {
	opts := append([]policy.Option{policy.WithFailOpen(l.failOpen)}, extra...)
	if l.key != "" {
		opts = append(opts, policy.WithVerificationKeyFile(l.key))
	}
	return opts
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}

func policyEval(ctx context.Context, args []string, stdout, stderr io.Writer, extra []policy.Option) error {
	fs := flag.NewFlagSet("sluice policy eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var lf loadFlags
	lf.register(fs)
	action := fs.String("action", "", "decision point: advertise, serve or resolve")
	inputPath := fs.String("input", "", "policy input JSON or YAML file, - for stdin")
	mirrors := fs.String("mirrors", "", "comma-separated mirrors for an input without any (default: *)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	a, err := policy.ParseAction(*action)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if *inputPath == "" {
		return fmt.Errorf("%w: --input is required", errUsage)
	}
	var raw []byte
	if *inputPath == "-" {
		raw, err = io.ReadAll(os.Stdin)
	} else {
		raw, err = os.ReadFile(*inputPath)
	}
	if err != nil {
		return fmt.Errorf("read input: %w", err)
	}
	var in policy.Input
	if err := yaml.UnmarshalStrict(raw, &in); err != nil {
		return fmt.Errorf("input %s: %w", *inputPath, err)
	}
	set, err := policy.Load(ctx, lf.paths, lf.options(extra)...)
	if err != nil {
		return err
	}
	defer set.Close()
	if *mirrors != "" {
		set.SetMirrors(strings.Split(*mirrors, ","))
	}
	d, err := set.Decide(ctx, a, in)
	if err != nil {
		return err
	}
	out := struct {
		Allow   bool     `json:"allow"`
		Reasons []string `json:"reasons"`
	}{d.Allow, d.Reasons}
	if out.Reasons == nil {
		out.Reasons = []string{}
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

func policyTest(ctx context.Context, args []string, stdout, stderr io.Writer, extra []policy.Option) error {
	fs := flag.NewFlagSet("sluice policy test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var lf loadFlags
	lf.register(fs)
	verbose := fs.Bool("v", false, "print passing cases too")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: policy test needs case files", errUsage)
	}
	cases, err := policytest.Load(fs.Args()...)
	if err != nil {
		return err
	}
	sets := map[string]*policy.Set{}
	defer func() {
		for _, s := range sets {
			_ = s.Close()
		}
	}()
	passed, failed := 0, 0
	for _, c := range cases {
		key, err := json.Marshal(c.Data)
		if err != nil {
			return err
		}
		set, ok := sets[string(key)]
		if !ok {
			set, err = policy.Load(ctx, lf.paths, append(lf.options(extra), policy.WithData(c.Data))...)
			if err != nil {
				return err
			}
			sets[string(key)] = set
		}
		if err := c.Check(ctx, set); err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %s: %v\n", c.File, c.Name, err)
			continue
		}
		passed++
		if *verbose {
			fmt.Fprintf(stdout, "PASS %s: %s\n", c.File, c.Name)
		}
	}
	for _, s := range sets {
		// The cache depends on the policy files, not on a case's data:
		// one set tells for all.
		fmt.Fprintf(stdout, "decision cache: %s\n", s.Cache())
		break
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return fmt.Errorf("%d policy cases failed", failed)
	}
	return nil
}

func policyFmt(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice policy fmt", flag.ContinueOnError)
	fs.SetOutput(stderr)
	write := fs.Bool("w", false, "write the result to the file instead of stdout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: policy fmt needs .rego files", errUsage)
	}
	for _, name := range fs.Args() {
		src, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		out, err := format.SourceWithOpts(name, src, format.Opts{RegoVersion: ast.RegoV1})
		if err != nil {
			return fmt.Errorf("format %s: %w", name, err)
		}
		if !*write {
			if _, err := stdout.Write(out); err != nil {
				return err
			}
			continue
		}
		if !bytes.Equal(src, out) {
			if err := os.WriteFile(name, out, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

package policy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/sluice-oci/sluice/policies"
)

// snapshot is everything read from the policy paths, before compiling.
type snapshot struct {
	modules  map[string]*ast.Module
	data     map[string]any
	wasm     []wasmFile
	hasRego  bool     // a non-Wasm path was given: the Rego set is a source
	watch    []string // directories to watch for changes
	revision string
}

type wasmFile struct {
	path   string
	module []byte
}

type reader struct {
	o    *options
	s    *snapshot
	h    hash.Hash
	vc   *bundle.VerificationConfig
	fsys fs.FS // nil: the OS file system
}

var parserOptions = ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}

// readSnapshot reads every path (or the shipped policies when there are
// none) and hashes what it read into the revision.
func readSnapshot(paths []string, o *options) (*snapshot, error) {
	r := &reader{
		o: o,
		s: &snapshot{modules: map[string]*ast.Module{}, data: map[string]any{}},
		h: sha256.New(),
	}
	vc, err := r.verificationConfig()
	if err != nil {
		return nil, err
	}
	r.vc = vc
	if len(paths) == 0 {
		r.fsys = policies.FS()
		r.s.hasRego = true
		if err := r.walkDir(".", "policies", nil); err != nil {
			return nil, err
		}
	}
	for _, p := range paths {
		if err := r.readPath(p); err != nil {
			return nil, err
		}
	}
	if len(o.data) > 0 {
		bs, err := json.Marshal(o.data)
		if err != nil {
			return nil, &Error{Code: CodeLoad, Message: "policy data option", Err: err}
		}
		r.hashFile("option:data", bs)
		var extra map[string]any
		if err := util.UnmarshalJSON(bs, &extra); err != nil {
			return nil, &Error{Code: CodeLoad, Message: "policy data option", Err: err}
		}
		overlay(r.s.data, extra)
	}
	r.s.revision = hex.EncodeToString(r.h.Sum(nil))[:16]
	return r.s, nil
}

func (r *reader) hashFile(name string, bs []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(name)))
	r.h.Write(n[:])
	r.h.Write([]byte(name))
	binary.BigEndian.PutUint64(n[:], uint64(len(bs)))
	r.h.Write(n[:])
	r.h.Write(bs)
}

func (r *reader) readPath(p string) error {
	info, err := os.Stat(p)
	if err != nil {
		return &Error{Code: CodeLoad, Location: p, Message: "cannot read policy path", Err: err}
	}
	if info.IsDir() {
		r.s.hasRego = true
		r.s.watch = append(r.s.watch, p)
		return r.walkDir(p, p, nil)
	}
	r.s.watch = append(r.s.watch, filepath.Dir(p))
	switch classify(p) {
	case kindOther:
		return &Error{Code: CodeLoad, Location: p, Message: "not a policy file (want a directory, .rego, .json, .yaml, .yml, .tar.gz or .wasm)"}
	case kindWasm, kindBundle: // a bundle of compiled policy only is no Rego source
	default:
		r.s.hasRego = true
	}
	return r.readFile(p, p, nil)
}

// walkDir reads a directory as OPA does: data files land under their
// directory path relative to the root. Hidden entries (ConfigMap ..data
// links), testdata directories, *_test.rego and *.schema.json are skipped.
func (r *reader) walkDir(dir, display string, dataPath []string) error {
	entries, err := r.readDir(dir)
	if err != nil {
		return &Error{Code: CodeLoad, Location: display, Message: "cannot read policy directory", Err: err}
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		p, d := r.join(dir, name), filepath.Join(display, name)
		info, err := r.stat(p)
		if err != nil {
			return &Error{Code: CodeLoad, Location: d, Message: "cannot read policy file", Err: err}
		}
		if info.IsDir() {
			if name == "testdata" {
				continue
			}
			if r.fsys == nil {
				r.s.watch = append(r.s.watch, p)
			}
			if err := r.walkDir(p, d, append(dataPath[:len(dataPath):len(dataPath)], name)); err != nil {
				return err
			}
			continue
		}
		if strings.HasSuffix(name, "_test.rego") || strings.HasSuffix(name, ".schema.json") || classify(name) == kindOther {
			continue
		}
		if err := r.readFile(p, d, dataPath); err != nil {
			return err
		}
	}
	return nil
}

type fileKind int

const (
	kindOther fileKind = iota
	kindRego
	kindData
	kindBundle
	kindWasm
)

func classify(name string) fileKind {
	switch {
	case strings.HasSuffix(name, ".rego"):
		return kindRego
	case strings.HasSuffix(name, ".json"), strings.HasSuffix(name, ".yaml"), strings.HasSuffix(name, ".yml"):
		return kindData
	case strings.HasSuffix(name, ".tar.gz"), strings.HasSuffix(name, ".tgz"):
		return kindBundle
	case strings.HasSuffix(name, ".wasm"):
		return kindWasm
	}
	return kindOther
}

func (r *reader) readFile(p, display string, dataPath []string) error {
	if r.vc != nil && r.fsys == nil && classify(p) != kindBundle {
		// Policy must be signed: a file beside the bundles would widen or
		// replace what the signer decided, unchecked.
		return &Error{Code: CodeLoad, Location: display,
			Message: "unsigned policy file refused: a bundle verification key is set, so every policy path must be a signed bundle (.tar.gz)"}
	}
	bs, err := r.read(p)
	if err != nil {
		return &Error{Code: CodeLoad, Location: display, Message: "cannot read policy file", Err: err}
	}
	r.hashFile(display, bs)
	switch classify(p) {
	case kindRego:
		return r.addModule(display, bs)
	case kindData:
		var doc any
		if err := util.Unmarshal(bs, &doc); err != nil {
			return &Error{Code: CodeLoad, Location: display, Message: "bad data file", Err: err}
		}
		if doc == nil {
			return nil
		}
		for i := len(dataPath) - 1; i >= 0; i-- {
			doc = map[string]any{dataPath[i]: doc}
		}
		obj, ok := doc.(map[string]any)
		if !ok {
			return &Error{Code: CodeLoad, Location: display, Message: "data file at the root must hold an object"}
		}
		if err := mergeData(r.s.data, obj, nil); err != nil {
			return &Error{Code: CodeLoad, Location: display, Message: "data conflicts with another file", Err: err}
		}
	case kindBundle:
		return r.addBundle(display, bs)
	case kindWasm:
		if r.o.wasm == nil {
			return &Error{Code: CodeLoad, Location: display, Message: "a .wasm policy needs a Wasm engine (none configured)"}
		}
		r.s.wasm = append(r.s.wasm, wasmFile{path: display, module: bs})
	}
	return nil
}

func (r *reader) addModule(name string, src []byte) error {
	m, err := ast.ParseModuleWithOpts(name, string(src), parserOptions)
	if err != nil {
		return compileError(err)
	}
	if m == nil { // empty file or comments only
		return nil
	}
	r.s.modules[name] = m
	return nil
}

func (r *reader) addBundle(display string, bs []byte) error {
	b, err := bundle.NewReader(bytes.NewReader(bs)).
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotations(true).
		WithBundleVerificationConfig(r.vc).
		WithSkipBundleVerification(r.vc == nil).
		Read()
	if err != nil {
		return &Error{Code: CodeLoad, Location: display, Message: "bad bundle", Err: err}
	}
	// A compiled policy (opa build -t wasm) runs on the Wasm engine, which
	// speaks OPA's Wasm ABI too; the bundle's .rego files are its sources
	// and are not compiled again into the Rego set. Without a Wasm engine
	// it would be ignored: never ignore policy.
	if len(b.WasmModules) > 0 {
		if r.o.wasm == nil {
			return &Error{Code: CodeLoad, Location: display + ":" + bundleFileName(b.WasmModules[0].Path),
				Message: "OPA bundles with compiled Wasm policy (policy.wasm) are not supported without a Wasm engine (none configured): build the bundle from .rego (opa build without -t wasm)"}
		}
		for _, w := range b.WasmModules {
			r.s.wasm = append(r.s.wasm, wasmFile{path: display + ":" + bundleFileName(w.Path), module: w.Raw})
		}
	} else {
		r.s.hasRego = true
	}
	if len(b.PlanModules) > 0 {
		return &Error{Code: CodeLoad, Location: display + ":" + bundleFileName(b.PlanModules[0].Path),
			Message: "OPA bundles with compiled plans (plan.json) are not supported: build the bundle from .rego (opa build without -t plan)"}
	}
	if len(b.WasmModules) == 0 {
		for _, m := range b.Modules {
			name := display + ":" + bundleFileName(m.Path)
			if err := r.addModule(name, m.Raw); err != nil {
				return err
			}
		}
	}
	if err := mergeData(r.s.data, b.Data, nil); err != nil {
		return &Error{Code: CodeLoad, Location: display, Message: "bundle data conflicts with another file", Err: err}
	}
	return nil
}

// bundleFileName is the path of a file inside a bundle, without a
// leading slash.
func bundleFileName(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

func (r *reader) verificationConfig() (*bundle.VerificationConfig, error) {
	key := r.o.keyPEM
	if r.o.keyFile != "" {
		bs, err := os.ReadFile(r.o.keyFile)
		if err != nil {
			return nil, &Error{Code: CodeLoad, Location: r.o.keyFile, Message: "cannot read bundle verification key", Err: err}
		}
		key = bs
	}
	if len(key) == 0 {
		return nil, nil
	}
	alg, err := keyAlgorithm(key)
	if err != nil {
		return nil, &Error{Code: CodeLoad, Message: "bad bundle verification key", Err: err}
	}
	r.hashFile("option:verification-key", key)
	const id = "sluice"
	keys := map[string]*bundle.KeyConfig{id: {Key: string(key), Algorithm: alg}}
	return bundle.NewVerificationConfig(keys, id, "", nil), nil
}

// keyAlgorithm picks the JWS algorithm that matches a public key; bytes
// that are not PEM are an HMAC secret.
func keyAlgorithm(key []byte) (string, error) {
	block, _ := pem.Decode(key)
	if block == nil {
		return "HS256", nil
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		if k, err2 := x509.ParsePKCS1PublicKey(block.Bytes); err2 == nil {
			pub = k
		} else {
			return "", err
		}
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RS256", nil
	case ed25519.PublicKey:
		return "EdDSA", nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256", nil
		case elliptic.P384():
			return "ES384", nil
		case elliptic.P521():
			return "ES512", nil
		}
	}
	return "", fmt.Errorf("unsupported public key type %T", pub)
}

// compileError turns OPA's ast errors into one coded error whose Location
// is the file:line of the first.
func compileError(err error) error {
	var errs ast.Errors
	if errors.As(err, &errs) && len(errs) > 0 {
		pe := &Error{Code: CodeCompile, Err: err}
		if loc := errs[0].Location; loc != nil {
			pe.Location = fmt.Sprintf("%s:%d", loc.File, loc.Row)
		}
		msgs := make([]string, 0, len(errs))
		for i, e := range errs {
			msg := e.Error()
			if i == 0 && pe.Location != "" {
				// Error() already leads with the Location.
				msg = strings.TrimPrefix(msg, pe.Location+": ")
			}
			msgs = append(msgs, msg)
		}
		pe.Message = strings.Join(msgs, "; ")
		return pe
	}
	return &Error{Code: CodeCompile, Err: err}
}

func (r *reader) readDir(p string) ([]fs.DirEntry, error) {
	if r.fsys != nil {
		return fs.ReadDir(r.fsys, p)
	}
	return os.ReadDir(p)
}

func (r *reader) stat(p string) (fs.FileInfo, error) {
	if r.fsys != nil {
		return fs.Stat(r.fsys, p)
	}
	return os.Stat(p) // follows symlinks (ConfigMap mounts)
}

func (r *reader) read(p string) ([]byte, error) {
	if r.fsys != nil {
		return fs.ReadFile(r.fsys, p)
	}
	return os.ReadFile(p)
}

func (r *reader) join(dir, name string) string {
	if r.fsys != nil {
		return path.Join(dir, name)
	}
	return filepath.Join(dir, name)
}

// mergeData merges src into dst; two files may not set the same leaf.
func mergeData(dst, src map[string]any, at []string) error {
	for k, v := range src {
		cur, ok := dst[k]
		if !ok {
			dst[k] = v
			continue
		}
		a, aok := cur.(map[string]any)
		b, bok := v.(map[string]any)
		if !aok || !bok {
			return fmt.Errorf("data.%s is set twice", strings.Join(append(at, k), "."))
		}
		if err := mergeData(a, b, append(at[:len(at):len(at)], k)); err != nil {
			return err
		}
	}
	return nil
}

// overlay merges src into dst, src winning on conflicts.
func overlay(dst, src map[string]any) {
	for k, v := range src {
		a, aok := dst[k].(map[string]any)
		b, bok := v.(map[string]any)
		if aok && bok {
			overlay(a, b)
			continue
		}
		dst[k] = v
	}
}

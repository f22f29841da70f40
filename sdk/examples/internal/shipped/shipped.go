// Package shipped is the Go rewrite of the Rego policies shipped in
// policies/ (mirrors, latest, digest_only, and fetch's credentials rule), rule for rule and message for
// message, so that a Wasm module built from them decides exactly as the
// Rego set does.
package shipped

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sluice-oci/sluice/sdk"
)

// Rule returns the violations of one policy for in (empty: no objection).
type Rule func(in sdk.Input) []string

// Policy combines rules as policies/{advertise,serve,resolve}.rego do:
// allow when no rule reports a violation; the reasons are the violations,
// sorted and without duplicates (a Rego set).
func Policy(rules ...Rule) sdk.Func {
	return func(in sdk.Input) sdk.Decision {
		var violations []string
		for _, r := range rules {
			violations = append(violations, r(in)...)
		}
		if len(violations) == 0 {
			return sdk.Allow()
		}
		slices.Sort(violations)
		return sdk.Deny(slices.Compact(violations)...)
	}
}

// dockerAliases are the Docker Hub host names folded into docker.io.
var dockerAliases = map[string]string{"index.docker.io": "docker.io", "registry-1.docker.io": "docker.io"}

// canonical folds case and the Docker Hub aliases (lib.canonical).
func canonical(host string) string {
	h := strings.ToLower(host)
	if c, ok := dockerAliases[h]; ok {
		return c
	}
	return h
}

// Mirrors is policies/mirrors.rego: a registry is shared only when it is
// in input.mirrors, or "*" is; Docker Hub aliases are equivalent and an
// empty list shares nothing. serve is judged on the registries the content
// is known under (input.source.registries) when there are any: every one
// of them must be shared.
func Mirrors(in sdk.Input) []string {
	if slices.Contains(in.Mirrors, "*") {
		return nil
	}
	if bySource(in) {
		var unshared []string // mirrors.rego's unshared_sources
		for _, r := range in.Source.Registries {
			if !sharedRegistry(in, r) {
				unshared = append(unshared, r)
			}
		}
		if len(unshared) == 0 {
			return nil
		}
		return []string{"content known under registries not in mirrors: " + strings.Join(unshared, ", ")}
	}
	registry := registryOf(in)
	if registry != "" && (slices.Contains(in.Mirrors, registry) || sharedRegistry(in, registry)) { // absent: only "*" shares it
		return nil
	}
	return []string{fmt.Sprintf("registry %q is not in mirrors", registry)}
}

// bySource is mirrors.rego's by_source: a serve decision on content of
// known origin.
func bySource(in sdk.Input) bool {
	return in.Action == sdk.ActionServe && in.Source != nil && len(in.Source.Registries) > 0
}

// sharedRegistry is mirrors.rego's shared_registry.
func sharedRegistry(in sdk.Input, r string) bool {
	want := canonical(r)
	for _, m := range in.Mirrors {
		if canonical(m) == want {
			return true
		}
	}
	return false
}

// Latest is policies/latest.rego: a tag reference whose tag is "latest"
// or missing is neither advertised nor resolved unless
// data.sluice.settings.enable_latest is true.
func Latest(in sdk.Input) []string {
	if in.Action == sdk.ActionServe || !latestTag(in) || in.Settings.EnableLatest {
		return nil
	}
	return []string{fmt.Sprintf("latest tag is not shared between nodes: %s (set data.sluice.settings.enable_latest to share it)", refString(in))}
}

// DigestOnly is policies/digest_only.rego: with
// data.sluice.settings.digest_only, tag references are refused for every
// action.
func DigestOnly(in sdk.Input) []string {
	if !in.Settings.DigestOnly || hasDigest(in) {
		return nil
	}
	return []string{fmt.Sprintf("digest_only: tag reference %s is not shared, only digests are", refString(in))}
}

// Credentials is the credentials rule of policies/fetch.rego: a fetch
// that would send credentials upstream is refused unless
// data.sluice.settings.coalesce_credentialed is true. Other actions are
// not affected.
func Credentials(in sdk.Input) []string {
	if in.Action != sdk.ActionFetch || in.Upstream == nil || !in.Upstream.Credentials || in.Settings.CoalesceCredentialed {
		return nil
	}
	return []string{fmt.Sprintf("upstream %s needs credentials: content is not fetched on behalf of peers (set data.sluice.settings.coalesce_credentialed to allow it)", in.Upstream.Endpoint)}
}

func registryOf(in sdk.Input) string {
	if in.Reference == nil {
		return ""
	}
	return in.Reference.Registry
}

// hasDigest is lib.has_digest; without it a reference is a tag reference.
func hasDigest(in sdk.Input) bool {
	return in.Reference != nil && in.Reference.Digest != ""
}

// latestTag is lib.latest_tag: a tag reference tagged "latest" or untagged.
func latestTag(in sdk.Input) bool {
	if hasDigest(in) {
		return false
	}
	return in.Reference == nil || in.Reference.Tag == "" || in.Reference.Tag == "latest"
}

// refString is lib.ref_string: registry/repository[:tag][@digest].
func refString(in sdk.Input) string {
	r := in.Reference
	if r == nil {
		return "/"
	}
	s := r.Registry + "/" + r.Repository
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

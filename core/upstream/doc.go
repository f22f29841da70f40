// Package upstream is the real registry client of the node responsible for
// a key during a rollout (issue 11): it resolves a tag fresh, fetches a
// manifest and streams a blob from the upstream of a registry, with the
// endpoints, TLS and credentials that registries.yaml gives.
//
// It writes no registry client and no token flow: every request goes
// through containerd's own remotes/docker resolver, fetcher and authorizer
// (Bearer and Basic challenges, OAuth POST with GET fallback, identity
// tokens), with one docker.RegistryHost per endpoint. Endpoints are built
// the way sluice writes hosts.toml for the node's containerd (core/config):
// `mirrors.<registry>.endpoint` in order (the `"*"` entry's when the
// registry has none), then the registry itself (config.UpstreamURL); an
// endpoint path other than /v2 is the API root (override_path); a mirror
// endpoint gets `?ns=<registry>` as containerd sends it; an http endpoint
// with TLS settings tries https first, as containerd does.
//
// Why a fresh authorizer per call? containerd makes one per pull, and its
// authorizer remembers a failed token fetch for as long as it lives. The
// requests of one call (a HEAD and its GET) share a token; the HTTP clients
// and their connections are shared by all calls (see session.go).
//
// Why ask one endpoint at a time for a digest of unknown size? containerd's
// Resolve of a digest tries /manifests on every endpoint, then /blobs; a 5xx
// from any mirror on the first pass stops it from trying the second.
//
// Why verify here when requesters verify too? The responsible node keeps
// what it fetched for others; a read that ends with the wrong bytes ends
// with ErrDigestMismatch instead of io.EOF, so nothing wrong is kept.
//
// Not supported: registries.yaml `rewrite` (stock containerd cannot apply
// it either; see core/config).
package upstream

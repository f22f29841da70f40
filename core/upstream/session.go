package upstream

import (
	"net/http"

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
)

// session is one call's view of a registry: its endpoints as containerd
// hosts, each with an authorizer made for this call. Tokens are shared by
// the requests of the call (a HEAD and its GET) and forgotten after it:
// containerd makes an authorizer per pull, and its authorizer keeps a
// failed token fetch for as long as it lives. The HTTP clients, and their
// connections, are the Client's and outlive the session.
type session struct {
	eps   []Endpoint
	hosts []docker.RegistryHost
	hdr   http.Header
}

func (c *Client) session(registry string) (*session, error) {
	eps, err := c.Endpoints(registry)
	if err != nil {
		return nil, err
	}
	byHost := map[string]Endpoint{}
	for _, e := range eps {
		if _, ok := byHost[e.host.Host]; !ok {
			byHost[e.host.Host] = e
		}
	}
	creds := func(host string) (string, string, error) {
		return credentials(byHost[host].auth)
	}
	s := &session{eps: eps, hosts: make([]docker.RegistryHost, len(eps)),
		hdr: http.Header{"User-Agent": []string{c.opts.userAgent}}}
	for i, e := range eps {
		h := e.host
		h.Authorizer = docker.NewDockerAuthorizer(
			docker.WithAuthClient(h.Client),
			docker.WithAuthHeader(s.hdr),
			docker.WithAuthCreds(creds))
		s.hosts[i] = h
	}
	return s, nil
}

// resolver is containerd's resolver over the endpoints from..to-1.
func (s *session) resolver(from, to int) remotes.Resolver {
	hosts := s.hosts[from:to]
	return docker.NewResolver(docker.ResolverOptions{
		Hosts:   func(string) ([]docker.RegistryHost, error) { return hosts, nil },
		Headers: s.hdr,
	})
}

package main

import (
	"context"
	"html/template"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/policy"
)

// statusSource is what the status page reads from a running node.
type statusSource struct {
	name, registryAddr string
	started            time.Time
	router             *routing.P2P
	adv                *routing.Advertiser
	pol                *policy.Set
	st                 store.Store
	log                *requestLog  // nil: no request log
	draining           *atomic.Bool // nil: never draining
	page               *template.Template
}

// statusDoc is the status page's content: /status serves it as JSON, /
// as HTML, and `sluice status` prints it as text. The first fields are
// those of the original JSON page (tools read them); add, never rename.
type statusDoc struct {
	PeerID         string   `json:"peer_id"`
	Addrs          []string `json:"addrs"`
	Ready          bool     `json:"ready"`
	Peers          int      `json:"peers"`
	Store          string   `json:"store"`
	Images         []string `json:"images"`
	ImageCount     int      `json:"image_count"`
	ImagesOmitted  int      `json:"images_omitted,omitempty"` // shared images past maxStatusImages
	AdvertisedKeys int      `json:"advertised_keys"`
	PolicyRevision string   `json:"policy_revision"`
	PolicyError    string   `json:"policy_error"`

	Node          nodeView       `json:"node"`
	PeerList      []peerView     `json:"peer_list"`
	Keys          keysView       `json:"keys"`
	Requests      []requestView  `json:"requests"`
	RequestsTotal int64          `json:"requests_total"`
	Policy        policyView     `json:"policy"`
	Generated     time.Time      `json:"generated"`
	Unattributed  []trafficEntry `json:"other_traffic,omitempty"`
}

type nodeView struct {
	Name         string    `json:"name"`
	Version      string    `json:"version"`
	StoreKind    string    `json:"store_kind"`
	StoreWhere   string    `json:"store_where"` // containerd namespace or oci directory
	RegistryAddr string    `json:"registry_addr"`
	Started      time.Time `json:"started"`
	Draining     bool      `json:"draining"`
}

type peerView struct {
	routing.PeerStatus
	peerTraffic
	// LastContact is the latest of: the open connection's start, the
	// last request to or from the peer.
	LastContact time.Time `json:"last_contact,omitzero"`
}

type trafficEntry struct {
	Peer string `json:"peer"`
	peerTraffic
}

type keysView struct {
	// ByRegistry counts the tag keys announced, by registry.
	ByRegistry map[string]int `json:"by_registry"`
	// Digests counts the digest keys announced (manifests, configs, layers).
	Digests int `json:"digests"`
}

type policyView struct {
	Paths     []string            `json:"paths"` // empty: the shipped policies
	Sources   []policy.SourceInfo `json:"sources"`
	Revision  string              `json:"revision"`
	LastError string              `json:"last_error,omitempty"`
	Cache     policy.CacheInfo    `json:"cache"`
	CacheLine string              `json:"cache_summary"`
}

type requestView struct {
	Time      time.Time            `json:"time"`
	Method    string               `json:"method"`
	Kind      string               `json:"kind"`
	Name      string               `json:"name,omitempty"` // registry/repository[:tag][@digest]; empty when hidden
	Digest    string               `json:"digest,omitempty"`
	Hidden    bool                 `json:"hidden,omitempty"`
	From      string               `json:"requester"` // "local" or the requesting peer
	Source    string               `json:"source"`    // local, peer, none, upstream (fetched for a peer by coalescing)
	ServedBy  []registry.PeerBytes `json:"served_by,omitempty"`
	Status    int                  `json:"status"` // 0: aborted after the body started
	Sent      int64                `json:"bytes_sent"`
	Duration  string               `json:"duration"`
	Decisions []decisionView       `json:"decisions"`
}

type decisionView struct {
	Action  string   `json:"action"`
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons,omitempty"`
}

// hiddenReasons replaces the reasons of a decision on a hidden name: a
// reason may quote the name.
// maxStatusImages bounds the shared images the page lists by name (a node
// with thousands of images still renders a page of bounded size).
const maxStatusImages = 500

const hiddenReasons = "(reasons hidden with the name)"

func (s *statusSource) doc(ctx context.Context) statusDoc {
	ready, _ := s.router.Ready(ctx)
	draining := s.draining != nil && s.draining.Load()
	var addrs []string
	for _, a := range s.router.Addrs() {
		addrs = append(addrs, a.String())
	}
	images, _ := s.st.Images(ctx)
	names := s.adv.SharedImages()
	if names == nil {
		names = []string{}
	}
	omitted := max(0, len(names)-maxStatusImages)
	names = names[:len(names)-omitted]
	d := statusDoc{
		PeerID: s.router.ID().String(), Addrs: addrs, Ready: ready && !draining, Peers: s.router.PeerCount(),
		Store: storeName(s.st), Images: names, ImageCount: len(images), PolicyRevision: s.pol.Revision(),
		Generated: time.Now(), ImagesOmitted: omitted,
	}
	if err := s.pol.LastError(); err != nil {
		d.PolicyError = err.Error()
	}
	kind, where, _ := strings.Cut(d.Store, ":")
	d.Node = nodeView{Name: s.name, Version: version, StoreKind: kind, StoreWhere: where,
		RegistryAddr: s.registryAddr, Started: s.started, Draining: draining}
	d.Keys = keysView{ByRegistry: map[string]int{}}
	for _, k := range s.adv.Advertised() {
		d.AdvertisedKeys++
		if strings.HasPrefix(k, "sha256:") || !strings.Contains(k, "/") {
			d.Keys.Digests++
			continue
		}
		reg, _, _ := strings.Cut(k, "/")
		d.Keys.ByRegistry[reg]++
	}
	d.Policy = policyView{Paths: s.pol.Paths(), Sources: s.pol.Sources(), Revision: d.PolicyRevision,
		LastError: d.PolicyError, Cache: s.pol.Cache()}
	d.Policy.CacheLine = d.Policy.Cache.String()
	if d.Policy.Paths == nil {
		d.Policy.Paths = []string{}
	}
	var traffic map[string]peerTraffic
	if s.log != nil {
		traffic = s.log.peers()
		var evs []registry.RequestEvent
		evs, d.RequestsTotal = s.log.recent()
		stored := map[string][]store.Image{} // by registry/repository
		for _, img := range images {
			stored[img.Registry+"/"+img.Repository] = append(stored[img.Registry+"/"+img.Repository], img)
		}
		shown := map[oci.Reference]bool{}
		for _, ev := range evs {
			vis, ok := shown[ev.Ref]
			if !ok {
				vis = s.nameVisible(ctx, ev.Ref, ev.Kind, stored[ev.Ref.Name()])
				shown[ev.Ref] = vis
			}
			d.Requests = append(d.Requests, viewRequest(ev, vis))
		}
	}
	for _, ps := range s.router.Peers() {
		pv := peerView{PeerStatus: ps, peerTraffic: traffic[ps.ID]}
		delete(traffic, ps.ID)
		pv.LastContact = pv.Last
		if ps.Connected {
			pv.LastContact = d.Generated // connected now
		}
		d.PeerList = append(d.PeerList, pv)
	}
	for _, k := range slices.Sorted(maps.Keys(traffic)) {
		d.Unattributed = append(d.Unattributed, trafficEntry{Peer: k, peerTraffic: traffic[k]})
	}
	return d
}

// nameVisible reports whether the request log may name ref: only when the
// advertise policy would let this node announce it (what peers can learn
// anyway). When the store holds images of ref's repository (stored), the
// policy judges them as the advertiser does, on their labels and pinning
// (the image of ref's tag if held, else any image of the repository); a
// reference the store knows nothing of is judged on the request alone. A
// hidden request shows its kind and digest only.
func (s *statusSource) nameVisible(ctx context.Context, ref oci.Reference, kind string, stored []store.Image) bool {
	pk := policy.KindBlob
	if kind == oci.KindManifest.String() {
		pk = policy.KindManifest
	}
	in := policy.Input{
		Action: policy.ActionAdvertise,
		Reference: &policy.Reference{Registry: ref.Registry, Repository: ref.Repository, Tag: ref.Tag,
			Digest: ref.Digest.String(), Kind: pk},
		Source: &policy.Source{Registries: []string{ref.Registry}, Repositories: []string{ref.Name()}},
	}
	if ref.Tag != "" {
		in.Source.Image = ref.String()
	}
	allow := func(in policy.Input) bool {
		dec, err := s.pol.Decide(ctx, policy.ActionAdvertise, in)
		return err == nil && dec.Allow
	}
	if tagged := slices.DeleteFunc(slices.Clone(stored), func(img store.Image) bool { return img.Tag != ref.Tag }); ref.Tag != "" && len(tagged) > 0 {
		stored = tagged
	}
	if len(stored) == 0 {
		return allow(in)
	}
	for _, img := range stored {
		src := *in.Source
		src.Image, src.Pinned, src.Labels = img.Name, img.Pinned, img.Labels
		in.Source = &src
		if allow(in) {
			return true
		}
	}
	return false
}

func viewRequest(ev registry.RequestEvent, visible bool) requestView {
	rv := requestView{Time: ev.Start, Method: ev.Method, Kind: ev.Kind, Digest: ev.Ref.Digest.String(),
		Hidden: !visible, From: "local", Source: ev.Source, ServedBy: ev.From, Status: ev.Status, Sent: ev.Sent,
		Duration: ev.Duration.Round(10 * time.Microsecond).String()}
	if visible {
		rv.Name = ev.Ref.String()
	}
	if ev.Peer != nil {
		rv.From = peerKey(ev)
	}
	for _, dc := range ev.Decisions {
		dv := decisionView{Action: string(dc.Action), Allow: dc.Allow, Reasons: dc.Reasons}
		if dc.Err != "" {
			dv.Reasons = append(slices.Clone(dv.Reasons), "engine error: "+dc.Err)
		}
		if !visible && len(dv.Reasons) > 0 {
			dv.Reasons = []string{hiddenReasons}
		}
		rv.Decisions = append(rv.Decisions, dv)
	}
	return rv
}

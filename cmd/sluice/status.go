package main

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/policy"
)

// writeStatus serves the node's status page as JSON. It names only the
// images the advertise policy shares (what peers can learn anyway) and
// counts the rest: the page must not reveal what the policy hides.
func writeStatus(w http.ResponseWriter, r *http.Request, router *routing.P2P, adv *routing.Advertiser, pol *policy.Set, st store.Store) {
	ready, _ := router.Ready(r.Context())
	var addrs []string
	for _, a := range router.Addrs() {
		s := a.String()
		if !strings.Contains(s, "/p2p/") {
			s += "/p2p/" + router.ID().String()
		}
		addrs = append(addrs, s)
	}
	images, _ := st.Images(r.Context())
	names := adv.SharedImages()
	if names == nil {
		names = []string{}
	}
	var polErr string
	if err := pol.LastError(); err != nil {
		polErr = err.Error()
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(map[string]any{
		"peer_id":         router.ID().String(),
		"addrs":           addrs,
		"ready":           ready,
		"peers":           router.PeerCount(),
		"store":           storeName(st),
		"images":          names,
		"image_count":     len(images),
		"advertised_keys": len(adv.Advertised()),
		"policy_revision": pol.Revision(),
		"policy_error":    polErr,
	})
}

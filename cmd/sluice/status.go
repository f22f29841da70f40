package main

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/policy"
)

// writeStatus serves the node's status page as JSON.
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
	names := make([]string, 0, len(images))
	for _, i := range images {
		names = append(names, i.Name)
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
		"advertised_keys": len(adv.Advertised()),
		"policy_revision": pol.Revision(),
		"policy_error":    polErr,
	})
}

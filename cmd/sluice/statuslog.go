package main

import (
	"slices"
	"sync"
	"time"

	"github.com/sluice-oci/sluice/core/registry"
)

// Bounds of what the status page keeps in memory.
const (
	requestLogSize = 100  // last requests shown
	maxPeerTraffic = 1024 // peers with byte counts; the least recent goes first
)

// requestLog is the node's registry.Observer for the status page: the
// last requestLogSize requests in a ring, and bytes in and out per peer.
type requestLog struct {
	mu      sync.Mutex
	ring    []registry.RequestEvent
	next    int // index of the oldest entry once the ring is full
	total   int64
	traffic map[string]*peerTraffic
}

// peerTraffic is what this node exchanged with one peer.
type peerTraffic struct {
	In       int64     `json:"bytes_in"`  // fetched from the peer
	Out      int64     `json:"bytes_out"` // served to the peer
	Requests int64     `json:"requests"`
	Last     time.Time `json:"last"`
}

var _ registry.Observer = (*requestLog)(nil)

func newRequestLog() *requestLog {
	return &requestLog{ring: make([]registry.RequestEvent, 0, requestLogSize), traffic: map[string]*peerTraffic{}}
}

// Request implements registry.Observer.
func (l *requestLog) Request(ev registry.RequestEvent) {
	end := ev.Start.Add(ev.Duration)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	if len(l.ring) < requestLogSize {
		l.ring = append(l.ring, ev)
	} else {
		l.ring[l.next] = ev
		l.next = (l.next + 1) % requestLogSize
	}
	if ev.Peer != nil {
		l.count(peerKey(ev), 0, ev.Sent, end)
	}
	for _, f := range ev.From {
		l.count(f.Peer, f.Bytes, 0, end)
	}
}

// peerKey names a requesting peer: its ID, or its address when it sent
// none.
func peerKey(ev registry.RequestEvent) string {
	if ev.Peer.ID != "" {
		return ev.Peer.ID
	}
	return "addr " + ev.Peer.Address
}

func (l *requestLog) count(peer string, in, out int64, at time.Time) {
	t := l.traffic[peer]
	if t == nil {
		if len(l.traffic) >= maxPeerTraffic {
			l.evictOldest()
		}
		t = &peerTraffic{}
		l.traffic[peer] = t
	}
	t.In += in
	t.Out += out
	t.Requests++
	if at.After(t.Last) {
		t.Last = at
	}
}

func (l *requestLog) evictOldest() {
	var oldest string
	var at time.Time
	for k, t := range l.traffic {
		if oldest == "" || t.Last.Before(at) {
			oldest, at = k, t.Last
		}
	}
	delete(l.traffic, oldest)
}

// recent returns the kept requests, newest first, and how many were seen
// in all.
func (l *requestLog) recent() ([]registry.RequestEvent, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]registry.RequestEvent, 0, len(l.ring))
	out = append(out, l.ring[l.next:]...)
	out = append(out, l.ring[:l.next]...)
	slices.Reverse(out)
	return out, l.total
}

// peers returns a copy of the per-peer traffic.
func (l *requestLog) peers() map[string]peerTraffic {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]peerTraffic, len(l.traffic))
	for k, t := range l.traffic {
		out[k] = *t
	}
	return out
}

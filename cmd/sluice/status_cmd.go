package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// statusCmd: sluice status [--metrics-addr URL] [--json] — a running
// node's status page, as text.
func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("metrics-addr", "http://127.0.0.1:9090", "the node's metrics address")
	asJSON := fs.Bool("json", false, "print the status document as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	base := *addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/status", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("node status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("node status: %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("node status: %w", err)
	}
	var doc statusDoc
	if err := json.Unmarshal(b, &doc); err != nil || doc.PeerID == "" {
		return fmt.Errorf("node status from %s: not a sluice status document", base)
	}
	if *asJSON {
		_, err := stdout.Write(b)
		return err
	}
	return writeStatusText(stdout, doc)
}

// writeStatusText prints the status page for a terminal: the same
// sections as the HTML page.
func writeStatusText(out io.Writer, d statusDoc) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	state := "ready"
	switch {
	case d.Node.Draining:
		state = "draining"
	case !d.Ready:
		state = "not ready: no peers"
	}
	now := d.Generated
	fmt.Fprintf(w, "Node\t%s (%s)\n", d.Node.Name, state)
	fmt.Fprintf(w, "Peer ID\t%s\n", d.PeerID)
	fmt.Fprintf(w, "Store\t%s %s, %d images\n", d.Node.StoreKind, d.Node.StoreWhere, d.ImageCount)
	fmt.Fprintf(w, "Registry\t%s\n", d.Node.RegistryAddr)
	fmt.Fprintf(w, "Addresses\t%s\n", strings.Join(d.Addrs, " "))
	fmt.Fprintf(w, "Version\t%s, up %s\n", d.Node.Version, strings.TrimSuffix(ago(d.Node.Started, now), " ago"))

	fmt.Fprintf(w, "\nPEERS (%d)\tADDRESSES\tREGISTRY\tSTATE\tLAST CONTACT\tIN\tOUT\n", len(d.PeerList))
	for _, p := range d.PeerList {
		st := "not connected"
		switch {
		case p.Left:
			st = "left"
		case p.Connected:
			st = "connected " + ago(p.Since, now)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, strings.Join(p.Addrs, " "), p.Registry, st,
			ago(p.LastContact, now), humanBytes(p.In), humanBytes(p.Out))
	}

	fmt.Fprintf(w, "\nADVERTISED KEYS (%d)\tCOUNT\n", d.AdvertisedKeys)
	for _, reg := range slices.Sorted(maps.Keys(d.Keys.ByRegistry)) {
		fmt.Fprintf(w, "tags of %s\t%d\n", reg, d.Keys.ByRegistry[reg])
	}
	fmt.Fprintf(w, "digests\t%d\n", d.Keys.Digests)
	fmt.Fprintf(w, "shared images\t%s\n", strings.Join(d.Images, " "))
	if d.ImagesOmitted > 0 {
		fmt.Fprintf(w, "\tand %d more\n", d.ImagesOmitted)
	}

	fmt.Fprintf(w, "\nREQUESTS (%d of %d)\tFROM\tSERVED FROM\tRESULT\tPOLICY\n", len(d.Requests), d.RequestsTotal)
	for _, r := range d.Requests {
		name := r.Name
		if r.Hidden {
			name = "(name hidden) " + r.Digest
		}
		served := r.Source
		switch r.Source {
		case "local":
			served = "local store"
		case "none":
			served = "not found"
		case "upstream":
			served = "upstream via coalescing"
		}
		if r.Source == "peer" && len(r.ServedBy) > 0 {
			served = ""
		}
		for _, p := range r.ServedBy {
			served = strings.TrimSpace(served + " peer " + p.Peer + " (" + humanBytes(p.Bytes) + ")")
		}
		result := "aborted"
		if r.Status != 0 {
			result = fmt.Sprint(r.Status)
		}
		var pol []string
		for _, dc := range r.Decisions {
			v := "allow"
			if !dc.Allow {
				v = "deny"
			}
			s := dc.Action + ": " + v
			if len(dc.Reasons) > 0 {
				s += " (" + strings.Join(dc.Reasons, "; ") + ")"
			}
			pol = append(pol, s)
		}
		fmt.Fprintf(w, "%s %s %s %s\t%s\t%s\t%s %s %s\t%s\n", r.Time.UTC().Format("15:04:05"), r.Method, r.Kind, name,
			r.From, served, result, humanBytes(r.Sent), r.Duration, strings.Join(pol, ", "))
	}

	fmt.Fprintf(w, "\nPOLICY\t\n")
	paths := strings.Join(d.Policy.Paths, " ")
	if paths == "" {
		paths = "the shipped policies (mirrors, latest)"
	}
	var srcs []string
	for _, s := range d.Policy.Sources {
		srcs = append(srcs, s.Name)
	}
	reload := "ok"
	if d.Policy.LastError != "" {
		reload = "failed: " + d.Policy.LastError + " (the revision above still serves)"
	}
	fmt.Fprintf(w, "paths\t%s\n", paths)
	fmt.Fprintf(w, "sources\t%s\n", strings.Join(srcs, " "))
	fmt.Fprintf(w, "revision\t%s\n", d.Policy.Revision)
	fmt.Fprintf(w, "last reload\t%s\n", reload)
	fmt.Fprintf(w, "decision cache\t%s\n", d.Policy.CacheLine)
	return w.Flush()
}

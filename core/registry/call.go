package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/policy"
)

// call is one request in flight.
type call struct {
	*Server
	w      http.ResponseWriter
	r      *http.Request
	req    oci.Request
	peer   *policy.Peer
	source string // local, peer or "" (none)
	status int
	info   store.Info // of local content requested by digest
	callTrace
}

func (c *call) fail(err error) {
	var oe *oci.Error
	if errors.As(err, &oe) {
		c.status = oe.Status
	} else {
		c.status = http.StatusInternalServerError
		c.log.Error("request failed", "path", c.r.URL.Path, "err", err)
	}
	oci.WriteError(c.w, c.r, err)
}

func (c *call) notFound() error {
	ref := c.req.Ref.String()
	if c.req.Kind == oci.KindManifest {
		return oci.Errorf(http.StatusNotFound, oci.CodeManifestUnknown, "manifest unknown: %s", ref)
	}
	return oci.Errorf(http.StatusNotFound, oci.CodeBlobUnknown, "blob unknown: %s", ref)
}

func (c *call) serve() {
	ctx := c.r.Context()
	if c.peer == nil && c.clientStore {
		// The local containerd asks for what its own store lacks or for a
		// tag it must re-check upstream: never answer from that store.
		c.servePeers(ctx)
		return
	}
	desc, err := c.local(ctx)
	switch {
	case err == nil:
		// A blob GET of a peer from the store takes a serve slot before
		// anything is opened; past the cap the peer goes elsewhere.
		release, ok := c.takePeerServe()
		if !ok {
			c.refuseBusy()
			return
		}
		if release != nil {
			defer release() // also when the copy aborts (panic)
		}
		c.source = "local"
		if err := c.serveLocal(ctx, desc); err != nil {
			c.fail(err)
		}
		return
	case !errors.Is(err, store.ErrNotFound):
		c.fail(fmt.Errorf("store: %w", err))
		return
	}
	if c.peer != nil {
		if !c.serveCoalesced(ctx) {
			c.fail(c.notFound())
		}
		return
	}
	c.servePeers(ctx)
}

// servePeers answers the local client through peers, when the resolve
// policy allows, or with a 404 at once.
func (c *call) servePeers(ctx context.Context) {
	if c.mirror == nil {
		c.fail(c.notFound())
		return
	}
	if !c.decide(ctx, policy.ActionResolve, c.input(policy.ActionResolve, ocispec.Descriptor{})) {
		c.fail(c.notFound())
		return
	}
	c.source = "peer"
	if err := c.serveFromPeers(ctx); err != nil {
		if errors.Is(err, ErrAborted) {
			panic(http.ErrAbortHandler)
		}
		if !errors.Is(err, store.ErrNotFound) {
			// Whatever failed among peers, containerd must move on to the
			// next host at once: a 404 does that, a 5xx may not.
			c.log.Warn("fetch from peers failed", "ref", c.req.Ref.String(), "err", err)
		}
		c.source = ""
		c.fail(c.notFound())
	}
}

// local finds the request's content in the store.
func (c *call) local(ctx context.Context) (ocispec.Descriptor, error) {
	ref := c.req.Ref
	if ref.Digest == "" {
		return c.store.Resolve(ctx, ref.Registry, ref.Repository, ref.Tag)
	}
	info, err := c.store.Stat(ctx, ref.Digest)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	c.info = info
	return ocispec.Descriptor{Digest: info.Digest, Size: info.Size, MediaType: info.MediaType}, nil
}

func (c *call) serveLocal(ctx context.Context, desc ocispec.Descriptor) error {
	if !c.decide(ctx, policy.ActionServe, c.input(policy.ActionServe, desc)) {
		if c.peer == nil {
			// The local containerd must move on to the next host at once:
			// a 404 does that, a 403 may end its pull.
			return c.notFound()
		}
		return oci.Errorf(http.StatusForbidden, oci.CodeDenied, "policy denies serving %s", c.req.Ref)
	}
	if c.req.Kind == oci.KindManifest {
		return c.serveLocalManifest(ctx, desc)
	}
	return c.serveLocalBlob(ctx, desc)
}

func (c *call) serveLocalManifest(ctx context.Context, desc ocispec.Descriptor) error {
	b, err := store.ReadAll(ctx, c.store, desc.Digest)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return c.notFound()
		}
		return fmt.Errorf("read manifest: %w", err)
	}
	if digest.FromBytes(b) != desc.Digest && desc.Digest.Algorithm() == digest.SHA256 {
		c.metrics.LocalVerifyFailures.Inc()
		c.log.Error("local manifest does not match its digest; not serving it", "digest", desc.Digest)
		return c.notFound()
	}
	mt := desc.MediaType
	if !store.IsManifestOrIndex(mt) {
		if d := oci.DetectManifestMediaType(b); d != "" {
			mt = d
		} else if mt == "" {
			return c.notFound()
		}
	}
	c.writeManifest(b, mt, desc.Digest)
	return nil
}

func (c *call) writeManifest(b []byte, mediaType string, d digest.Digest) {
	h := c.w.Header()
	h.Set("Content-Type", mediaType)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Etag", `"`+d.String()+`"`)
	c.status = http.StatusOK
	c.w.WriteHeader(http.StatusOK)
	if c.r.Method != http.MethodHead {
		n, _ := c.w.Write(b)
		c.countServed(int64(n))
	}
}

func (c *call) countServed(n int64) {
	to := "local"
	if c.peer != nil {
		to = "peer"
	}
	c.metrics.BytesServed.WithLabelValues(to).Add(float64(n))
	c.sent += n
}

func (c *call) serveLocalBlob(ctx context.Context, desc ocispec.Descriptor) error {
	content, err := c.store.Open(ctx, desc.Digest)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return c.notFound()
		}
		return fmt.Errorf("open blob: %w", err)
	}
	defer content.Close()
	var pending *flight
	if c.peer != nil {
		// Bytes leaving the node are checked once per file version, so a
		// blob corrupted on disk is never completed to a peer.
		if pending, err = c.verifyForPeer(desc.Digest, content); err != nil {
			return err
		}
	}
	size := content.Size()
	h := c.w.Header()
	h.Set("Content-Type", oci.MediaTypeOctetStream)
	h.Set("Docker-Content-Digest", desc.Digest.String())
	h.Set("Etag", `"`+desc.Digest.String()+`"`)
	h.Set("Accept-Ranges", "bytes")
	rng, partial, err := oci.ParseRange(c.r.Header.Get("Range"), size)
	if err != nil {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		c.status = http.StatusRequestedRangeNotSatisfiable
		var oe *oci.Error
		if errors.As(err, &oe) {
			writeRangeError(c.w, c.r, oe, size)
			return nil
		}
		return err
	}
	if !partial {
		rng = oci.ByteRange{Start: 0, Length: size}
	}
	h.Set("Content-Length", strconv.FormatInt(rng.Length, 10))
	c.status = http.StatusOK
	if partial {
		h.Set("Content-Range", rng.ContentRange(size))
		c.status = http.StatusPartialContent
	}
	setWriteDeadline(c.w, rng.Length)
	c.w.WriteHeader(c.status)
	if c.r.Method == http.MethodHead || rng.Length == 0 {
		return nil
	}
	var out io.Writer = c.w
	paced := c.peer != nil && c.peerLimit != nil
	if paced {
		// Paced responses count as they go, so progress shows in metrics.
		out = pacedWriter{ctx: ctx, w: c.w, l: c.peerLimit, count: c.countServed}
	}
	var n int64
	if pending != nil {
		n, err = copyBehindHash(ctx, out, content, rng, pending)
	} else {
		n, err = copyContent(out, content, rng)
	}
	if !paced {
		c.countServed(n)
	}
	if err != nil {
		if errors.Is(err, errVerifyFailed) {
			c.verifyFailed(desc.Digest)
		}
		c.log.Debug("blob copy ended early", "digest", desc.Digest, "sent", n, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// verifyForPeer checks a blob file before it goes to a peer: a version
// known good returns nil (sent with sendfile at once), one known bad a
// 404; otherwise the flight of its hash, behind which the response
// streams. Content that is not a file (the containerd content API) is
// trusted to the backend, which verifies on write.
func (c *call) verifyForPeer(d digest.Digest, content store.Content) (*flight, error) {
	f, isFile := content.(store.Filer)
	if !isFile {
		return nil, nil
	}
	st, err := stampOf(f.OSFile())
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", d, err)
	}
	open := func() (store.Content, error) { return c.store.Open(context.WithoutCancel(c.r.Context()), d) }
	// One grace for both waits: for a hash slot, then for the verdict. A
	// HEAD sends no bytes and needs no verdict: it never waits in line.
	gctx, cancel := context.WithTimeout(c.r.Context(), verifyGrace)
	defer cancel()
	sctx := gctx
	if c.r.Method == http.MethodHead {
		hctx, hcancel := context.WithCancel(gctx)
		hcancel()
		sctx = hctx
	}
	known, ok, fl := c.verified.state(sctx, d, st, open)
	if !known {
		if _, done, _, err := fl.wait(c.r.Context(), 0); done && errors.Is(err, errHashBusy) {
			// Every hash slot stayed busy for the grace: the peer goes to
			// another provider or the upstream, as with a full fetch
			// semaphore.
			c.metrics.VerifyRejected.Inc()
			return nil, oci.Errorf(http.StatusNotFound, oci.CodeBlobUnknown, "blob %s not verified yet and this node is busy verifying others", d)
		}
	}
	if !known && c.r.Method != http.MethodHead {
		// Most blobs hash within the grace: then a corrupt one is a clean
		// 404 (the peer goes elsewhere) rather than an aborted body.
		_, done, good, err := fl.wait(gctx, math.MaxInt64)
		if done && err != nil {
			return nil, fmt.Errorf("verify %s: %w", d, err)
		}
		known, ok = done, good
	}
	switch {
	case !known:
		return fl, nil
	case !ok:
		c.verifyFailed(d)
		return nil, oci.Errorf(http.StatusNotFound, oci.CodeBlobUnknown, "blob %s failed verification on this node", d)
	}
	return nil, nil
}

func (c *call) verifyFailed(d digest.Digest) {
	c.metrics.LocalVerifyFailures.Inc()
	c.log.Error("local blob does not match its digest; not serving it", "digest", d)
}

// copyContent writes a range of content to w, through sendfile when the
// content is a file.
func copyContent(w io.Writer, content store.Content, rng oci.ByteRange) (int64, error) {
	if f, ok := content.(store.Filer); ok {
		file := f.OSFile()
		if _, err := file.Seek(rng.Start, io.SeekStart); err != nil {
			return 0, err
		}
		// io.CopyN hands an *io.LimitedReader over an *os.File to the
		// ResponseWriter's ReadFrom, which uses sendfile(2) on TCP.
		return io.CopyN(w, file, rng.Length)
	}
	return io.Copy(w, io.NewSectionReader(content, rng.Start, rng.Length))
}

func writeRangeError(w http.ResponseWriter, r *http.Request, oe *oci.Error, size int64) {
	w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
	oci.WriteError(w, r, oe)
}

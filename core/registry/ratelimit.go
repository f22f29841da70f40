package registry

import (
	"context"
	"io"
	"net/http"

	"golang.org/x/time/rate"
)

// WithPeerRateLimit caps the bytes per second this node sends to peers, all
// peer requests together (0: no cap). Local clients are not limited. A cap
// trades sendfile for a paced copy on peer responses.
func WithPeerRateLimit(bytesPerSecond int64) Option {
	return func(s *Server) {
		if bytesPerSecond > 0 {
			burst := int(min(bytesPerSecond, 1<<20))
			s.peerLimit = rate.NewLimiter(rate.Limit(bytesPerSecond), burst)
		}
	}
}

// pacedWriter waits for limiter tokens before each write.
type pacedWriter struct {
	ctx   context.Context
	w     http.ResponseWriter
	l     *rate.Limiter
	count func(int64)
}

func (p pacedWriter) Write(b []byte) (int, error) {
	var n int
	for len(b) > 0 {
		chunk := b[:min(len(b), p.l.Burst())]
		if err := p.l.WaitN(p.ctx, len(chunk)); err != nil {
			return n, err
		}
		m, err := p.w.Write(chunk)
		n += m
		p.count(int64(m))
		if err != nil {
			return n, err
		}
		b = b[len(chunk):]
	}
	return n, nil
}

var _ io.Writer = pacedWriter{}

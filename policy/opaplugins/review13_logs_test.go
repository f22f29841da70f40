package opaplugins

import (
	"testing"
)

// TestNew_DecisionLogBufferBounded: OPA's default decision-log buffer
// (type "size") has no byte limit, so a sink that hangs or answers 500
// grows a node's memory with every decision until it is killed. Unless
// the configuration bounds the buffer itself (bytes, events, or a rate),
// New bounds it to DefaultLogBufferBytes.
func TestNew_DecisionLogBufferBounded(t *testing.T) {
	t.Parallel()
	const head = "services:\n  s:\n    url: http://127.0.0.1:1\ndecision_logs:\n  service: s\n"
	for _, tc := range []struct {
		name      string
		reporting string
		bytes     int64 // want buffer_size_limit_bytes; 0: as OPA leaves it
		events    int64 // want buffer_size_limit_events, event buffers
	}{
		{name: "no reporting", bytes: DefaultLogBufferBytes},
		{name: "reporting without limit", reporting: "  reporting: {min_delay_seconds: 5, max_delay_seconds: 10}\n", bytes: DefaultLogBufferBytes},
		{name: "size buffer without limit", reporting: "  reporting: {buffer_type: size}\n", bytes: DefaultLogBufferBytes},
		{name: "operator's byte limit", reporting: "  reporting: {buffer_size_limit_bytes: 1048576}\n", bytes: 1 << 20},
		{name: "event buffer", reporting: "  reporting: {buffer_type: event}\n", events: 10000},
		{name: "event buffer with limit", reporting: "  reporting: {buffer_type: event, buffer_size_limit_events: 50}\n", events: 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := New(t.Context(), []byte(head+tc.reporting))
			if err != nil {
				t.Fatal(err)
			}
			rep := r.logs.Config().Reporting
			if tc.bytes != 0 && (rep.BufferSizeLimitBytes == nil || *rep.BufferSizeLimitBytes != tc.bytes) {
				t.Errorf("buffer_size_limit_bytes = %v, want %d", deref(rep.BufferSizeLimitBytes), tc.bytes)
			}
			if tc.events != 0 && (rep.BufferSizeLimitEvents == nil || *rep.BufferSizeLimitEvents != tc.events) {
				t.Errorf("buffer_size_limit_events = %v, want %d", deref(rep.BufferSizeLimitEvents), tc.events)
			}
		})
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

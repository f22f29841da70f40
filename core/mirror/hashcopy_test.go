package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"testing/iotest"
	"unsafe"
)

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestVerifiedCopy_ReadFrom(t *testing.T) {
	t.Parallel()
	blob := make([]byte, 3*copyChunk+12345)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(blob)
	size := int64(len(blob))
	boom := errors.New("peer reset")
	cases := []struct {
		name             string
		src              io.Reader
		winStart, winEnd int64
		w                io.Writer
		n                int64 // bytes asked for; 0: the whole blob
		cancel, noHash   bool
		wantErr          error
		wantOff          int64
	}{
		{name: "whole blob", src: bytes.NewReader(blob), winEnd: size, wantOff: size},
		{name: "one byte reads", src: iotest.OneByteReader(bytes.NewReader(blob[:70000])), n: 70000, winEnd: 70000, wantOff: 70000},
		{name: "range inside the blob", src: bytes.NewReader(blob), winStart: 100, winEnd: copyChunk + 7, wantOff: size},
		{name: "range at the end", src: bytes.NewReader(blob), winStart: size - 10, winEnd: size, wantOff: size},
		{name: "short body", src: bytes.NewReader(blob[:copyChunk+1]), winEnd: size, wantErr: io.ErrUnexpectedEOF, wantOff: copyChunk + 1},
		{name: "peer error mid-blob", src: io.MultiReader(bytes.NewReader(blob[:200000]), iotest.ErrReader(boom)), winEnd: size, wantErr: boom, wantOff: 200000},
		{name: "client gone", src: bytes.NewReader(blob), winEnd: size, w: failWriter{}, wantErr: errClientGone, wantOff: firstChunk},
		{name: "context ended", src: bytes.NewReader(blob), winEnd: size, cancel: true, wantErr: errClientGone},
		{name: "verification off", src: bytes.NewReader(blob), winEnd: size, noHash: true, wantOff: size},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.cancel {
				cancel()
			}
			var out bytes.Buffer
			w := tc.w
			if w == nil {
				w = &out
			}
			var h hash.Hash
			if !tc.noHash {
				h = sha256.New()
			}
			v := &verifiedCopy{w: w, h: h, winStart: tc.winStart, winEnd: tc.winEnd}
			want := size
			if tc.n > 0 {
				want = tc.n
			}
			n, err := v.ReadFrom(ctx, tc.src, want)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if n != tc.wantOff || v.Off() != tc.wantOff {
				t.Fatalf("copied %d (off %d), want %d", n, v.Off(), tc.wantOff)
			}
			// Every byte taken is hashed by the time ReadFrom returns.
			if h != nil && !bytes.Equal(h.Sum(nil), sha(blob[:tc.wantOff])) {
				t.Errorf("hash is not of the %d bytes read", tc.wantOff)
			}
			if tc.w != nil {
				return
			}
			// The client got its window up to the held tail, nothing more.
			got := append(out.Bytes(), v.Held()...)
			lo, hi := min(tc.winStart, tc.wantOff), min(tc.winEnd, tc.wantOff)
			if tc.wantErr == nil && !bytes.Equal(got, blob[lo:hi]) {
				t.Errorf("client got %d bytes + %d held, want blob[%d:%d]", out.Len(), len(v.Held()), lo, hi)
			}
			if tc.wantErr == nil && tc.winEnd > tc.winStart && len(v.Held()) == 0 {
				t.Error("nothing held back: the client saw a complete window before verification")
			}
			if out.Len() > 0 && int64(out.Len()) >= tc.winEnd-tc.winStart {
				t.Errorf("client saw all %d bytes of its window before verification", out.Len())
			}
		})
	}
}

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// TestVerifiedCopy_Resume: a second ReadFrom from another source carries
// on at the offset reached, as a resume on another peer does.
func TestVerifiedCopy_Resume(t *testing.T) {
	t.Parallel()
	blob := bytes.Repeat([]byte("0123456789abcdef"), 100000)
	size := int64(len(blob))
	var out bytes.Buffer
	v := &verifiedCopy{w: &out, h: sha256.New(), winEnd: size}
	first := io.MultiReader(bytes.NewReader(blob[:777777]), iotest.ErrReader(io.ErrClosedPipe))
	if _, err := v.ReadFrom(t.Context(), first, size); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("first peer: %v", err)
	}
	if _, err := v.ReadFrom(t.Context(), bytes.NewReader(blob[v.Off():]), size-v.Off()); err != nil {
		t.Fatalf("second peer: %v", err)
	}
	if !bytes.Equal(v.Sum().Sum(nil), sha(blob)) || !bytes.Equal(append(out.Bytes(), v.Held()...), blob) {
		t.Fatal("resumed copy differs from the blob")
	}
}

// recordingReader fills reads from data and remembers the buffers it
// filled.
type recordingReader struct {
	data   []byte
	filled [][]byte
}

func (r *recordingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	r.filled = append(r.filled, p[:n])
	return n, nil
}

// sameMemoryWriter fails a write whose bytes are not in memory the
// reader filled: a copy sat between the read and the write.
type sameMemoryWriter struct{ r *recordingReader }

func (w sameMemoryWriter) Write(p []byte) (int, error) {
	start := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	for _, f := range w.r.filled {
		fs := uintptr(unsafe.Pointer(unsafe.SliceData(f)))
		if start >= fs && start+uintptr(len(p)) <= fs+uintptr(len(f)) {
			return len(p), nil
		}
	}
	return 0, errors.New("written from a copy, not from the buffer read into")
}

// TestVerifiedCopy_OnePass: the client is written from the very buffer
// the peer's body was read into (the hash reads it there too).
func TestVerifiedCopy_OnePass(t *testing.T) {
	t.Parallel()
	blob := bytes.Repeat([]byte{7}, 5*copyChunk)
	r := &recordingReader{data: blob}
	v := &verifiedCopy{w: sameMemoryWriter{r}, h: sha256.New(), winEnd: int64(len(blob))}
	if _, err := v.ReadFrom(t.Context(), r, int64(len(blob))); err != nil {
		t.Fatal(err)
	}
}

// TestMirror_ReadBufferSize: the peer transport's read buffer is no
// larger than the smallest read the copy makes, so bufio hands every
// body read straight to the socket: one copy from the kernel into our
// buffer instead of two (a 256 KiB bufio buffer copied most of each
// blob twice).
func TestMirror_ReadBufferSize(t *testing.T) {
	t.Parallel()
	m := New(nil)
	if got := m.client.Transport.(*http.Transport).ReadBufferSize; got > firstChunk {
		t.Fatalf("ReadBufferSize %d > first read %d: body reads are copied twice", got, firstChunk)
	}
}

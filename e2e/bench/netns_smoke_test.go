package bench

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestNetPair_Connect is the smoke test of the netns setup (make e2e): a
// listener in one namespace, a dial from the other over the veth pair,
// bytes both ways; loopback of the other namespace does not reach it.
func TestNetPair_Connect(t *testing.T) {
	p := newNetPair(t)
	ln, err := p.listen(0, p.ips[0]+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	c, err := p.dial(1)(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("sluice")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "sluice" {
		t.Fatalf("echo over the veth pair: %q, %v", buf, err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if c, err := p.dial(1)(t.Context(), "tcp", "127.0.0.1:"+port); err == nil {
		c.Close()
		t.Fatal("the second namespace reached the first one's listener on its own loopback")
	}
	// Elsewhere 10.213.0.0/24 may be routed: a dial that times out did not
	// reach the listener either.
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("the host namespace reached an address that should exist only inside the pair")
	}
}

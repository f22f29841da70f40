// Package e2e holds the multi-node tests: real containerd daemons and real
// sluice processes on 127.0.0.x, images generated offline, pulls with ctr
// through generated hosts.toml. They run as root (as here and in CI).
package e2e

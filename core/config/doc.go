// Package config reads the k3s/RKE2 registries.yaml that decides which
// registries a sluice node mirrors, and writes the containerd hosts.toml tree
// that sends containerd to the local sluice first.
//
// LoadRegistries parses and checks a registries.yaml (type errors and bad
// values are refused with the file name and key path, unknown keys are
// returned as warnings); (*Registries).Mirrors is the policy input `mirrors`.
// WriteHosts renders one DIR/<host>/hosts.toml per mirrored registry and
// writes it atomically, backing up what it replaces; RestoreHosts puts the
// backup back. WatchRegistries reloads the file when it changes.
package config

# mirrors: a registry is shared (advertised, served, resolved) only when
# it is in input.mirrors, or "*" is. The Docker Hub aliases docker.io,
# index.docker.io and registry-1.docker.io are equivalent. An empty list
# shares nothing (k3s registries.yaml semantics).
package sluice.policies

import rego.v1

import data.sluice.lib

mirrors_shared if "*" in input.mirrors

mirrors_shared if input.reference.registry in input.mirrors

# Slow path, for other spellings: fold case and Docker Hub aliases.
mirrors_shared if {
	registry := lib.canonical(input.reference.registry)
	some m in input.mirrors
	lib.canonical(m) == registry
}

violation contains msg if {
	not mirrors_shared
	msg := sprintf("registry %q is not in mirrors", [object.get(input, ["reference", "registry"], "")])
}

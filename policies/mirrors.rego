# mirrors: a registry is shared (advertised, served, resolved) only when
# it is in input.mirrors, or "*" is. The Docker Hub aliases docker.io,
# index.docker.io and registry-1.docker.io are equivalent. An empty list
# shares nothing (k3s registries.yaml semantics).
#
# serve is judged on what the serving node knows of the content: when
# input.source.registries names the registries it was pulled or imported
# under, every one of them must be shared, whatever registry the requester
# wrote (a claim, not a fact). "Any" would let content also known under a
# private registry be served as a public image's (a crafted import or
# public manifest naming a private digest adds a shared source); a base
# layer shared by a private and a public image is then left to the nodes
# holding only the public one, and to the upstream. Without sources, the
# requested registry is judged.
package sluice.policies

import rego.v1

import data.sluice.lib

# by_source holds for a serve decision on content of known origin.
by_source if {
	input.action == "serve"
	count(input.source.registries) > 0
}

mirrors_shared if "*" in input.mirrors

mirrors_shared if {
	not by_source
	input.reference.registry in input.mirrors
}

# Slow path, for other spellings: fold case and Docker Hub aliases.
mirrors_shared if {
	not by_source
	shared_registry(input.reference.registry)
}

mirrors_shared if {
	by_source
	count(unshared_sources) == 0
}

# unshared_sources are the registries the content is known under that are
# not shared, in input order.
unshared_sources := [r | some r in input.source.registries; not shared_registry(r)]

shared_registry(r) if {
	registry := lib.canonical(r)
	some m in input.mirrors
	lib.canonical(m) == registry
}

restriction contains "mirrors" if not mirrors_shared

message contains msg if {
	"mirrors" in restriction
	not by_source
	msg := sprintf("registry %q is not in mirrors", [object.get(input, ["reference", "registry"], "")])
}

message contains msg if {
	"mirrors" in restriction
	by_source
	msg := sprintf("content known under registries not in mirrors: %s", [concat(", ", unshared_sources)])
}

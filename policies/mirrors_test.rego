package sluice.policies_test.mirrors

import rego.v1

import data.sluice.advertise
import data.sluice.resolve
import data.sluice.serve

ref(registry) := {"registry": registry, "repository": "library/nginx", "digest": "sha256:aa", "kind": "blob"}

test_wildcard_shares_every_registry if {
	resolve.allow with input as {"action": "resolve", "reference": ref("ghcr.io"), "mirrors": ["*"]}
	serve.allow with input as {"action": "serve", "reference": ref("quay.io"), "mirrors": ["*"]}
	advertise.allow with input as {"action": "advertise", "reference": ref("example.com:5000"), "mirrors": ["docker.io", "*"]}
}

test_listed_registry_is_shared if {
	resolve.allow with input as {"action": "resolve", "reference": ref("registry.k8s.io"), "mirrors": ["docker.io", "registry.k8s.io"]}
}

test_unlisted_registry_is_not_shared if {
	in_ := {"action": "resolve", "reference": ref("ghcr.io"), "mirrors": ["docker.io"]}
	not resolve.allow with input as in_
	resolve.reasons == {`registry "ghcr.io" is not in mirrors`} with input as in_
}

test_docker_aliases_are_equivalent if {
	every m in ["docker.io", "index.docker.io", "registry-1.docker.io", "Docker.IO"] {
		every r in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
			serve.allow with input as {"action": "serve", "reference": ref(r), "mirrors": [m]}
		}
	}
}

test_empty_or_missing_mirrors_share_nothing if {
	not resolve.allow with input as {"action": "resolve", "reference": ref("docker.io"), "mirrors": []}
	not resolve.allow with input as {"action": "resolve", "reference": ref("docker.io")}
	not resolve.allow with input as {"action": "resolve", "reference": ref("docker.io"), "mirrors": null}
}

test_missing_registry_needs_wildcard if {
	not serve.allow with input as {"action": "serve", "reference": {"digest": "sha256:aa"}, "mirrors": ["docker.io"]}
	serve.allow with input as {"action": "serve", "reference": {"digest": "sha256:aa"}, "mirrors": ["*"]}
}

src(registries) := {"registries": registries, "repositories": [concat("/", [registries[0], "app"])]}

test_serve_is_judged_on_the_content_sources if {
	# The requester names a shared registry; the content is known only
	# under a private one: refused.
	in_ := {"action": "serve", "reference": ref("docker.io"), "source": src(["registry.internal"]), "mirrors": ["docker.io"]}
	not serve.allow with input as in_
	serve.reasons == {"content known under registries not in mirrors: registry.internal"} with input as in_
}

test_serve_needs_every_source_shared if {
	# Known under a shared and a private registry (a base layer of both,
	# or a crafted import naming a private digest): refused.
	in_ := {"action": "serve", "reference": ref("docker.io"), "source": src(["registry.internal", "Index.Docker.IO", "ghcr.io"]), "mirrors": ["docker.io"]}
	not serve.allow with input as in_
	serve.reasons == {"content known under registries not in mirrors: registry.internal, ghcr.io"} with input as in_
	serve.allow with input as {"action": "serve", "reference": ref("ghcr.io"), "source": src(["Index.Docker.IO", "quay.io"]), "mirrors": ["docker.io", "quay.io"]}
	serve.allow with input as {"action": "serve", "reference": ref("docker.io"), "source": src(["registry.internal"]), "mirrors": ["*"]}
}

test_serve_without_sources_judges_the_request if {
	serve.allow with input as {"action": "serve", "reference": ref("docker.io"), "source": {"image": "docker.io/library/nginx:1"}, "mirrors": ["docker.io"]}
	not serve.allow with input as {"action": "serve", "reference": ref("quay.io"), "source": {"registries": []}, "mirrors": ["docker.io"]}
}

test_sources_do_not_change_other_actions if {
	resolve.allow with input as {"action": "resolve", "reference": ref("docker.io"), "source": src(["registry.internal"]), "mirrors": ["docker.io"]}
}

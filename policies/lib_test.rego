package sluice.lib_test

import rego.v1

import data.sluice.lib

test_canonical_folds_docker_aliases if {
	lib.canonical("index.docker.io") == "docker.io"
	lib.canonical("REGISTRY-1.docker.io") == "docker.io"
	lib.canonical("Quay.io") == "quay.io"
}

test_ref_string if {
	lib.ref_string == "docker.io/library/nginx:1.27@sha256:aa" with input as {"reference": {"registry": "docker.io", "repository": "library/nginx", "tag": "1.27", "digest": "sha256:aa"}}
	lib.ref_string == "/" with input as {}
}

test_settings_default_false if {
	not lib.enable_latest
	not lib.digest_only
}

test_dropin_violation_is_collected if {
	lib.violations == {"x"} with data.sluice.policies.violation as {"x"}
		with input as {"action": "serve", "reference": {"digest": "sha256:aa"}, "mirrors": ["*"]}
}

# A shipped restriction is named in `restriction` (what allow reads) and
# explained in `message` (what reasons read, only on a refusal).
test_restriction_and_its_message if {
	in_ := {"action": "resolve", "reference": {"registry": "docker.io", "repository": "library/nginx", "tag": "latest"}, "mirrors": ["*"]}
	lib.violated with input as in_
	not data.sluice.resolve.allow with input as in_
	data.sluice.policies.restriction == {"latest"} with input as in_
	count(data.sluice.resolve.reasons) == 1 with input as in_
}

test_dropin_violation_is_a_restriction if {
	lib.violated with data.sluice.policies.violation as {"x"}
		with input as {"action": "serve", "reference": {"registry": "docker.io", "digest": "sha256:aa"}, "mirrors": ["*"]}
	not lib.violated with input as {"action": "serve", "reference": {"registry": "docker.io", "digest": "sha256:aa"}, "mirrors": ["*"]}
}

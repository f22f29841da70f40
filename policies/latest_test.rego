package sluice.policies_test.latest

import rego.v1

import data.sluice.advertise
import data.sluice.resolve
import data.sluice.serve

tagged(tag) := {"registry": "docker.io", "repository": "library/nginx", "tag": tag, "kind": "manifest"}

untagged := {"registry": "docker.io", "repository": "library/nginx", "kind": "manifest"}

test_latest_is_not_resolved_or_advertised if {
	not resolve.allow with input as {"action": "resolve", "reference": tagged("latest"), "mirrors": ["*"]}
	not advertise.allow with input as {"action": "advertise", "reference": tagged("latest"), "mirrors": ["*"]}
	some msg in resolve.reasons with input as {"action": "resolve", "reference": tagged("latest"), "mirrors": ["*"]}
	contains(msg, "latest tag is not shared")
}

test_missing_tag_counts_as_latest if {
	not resolve.allow with input as {"action": "resolve", "reference": untagged, "mirrors": ["*"]}
	not resolve.allow with input as {"action": "resolve", "reference": tagged(""), "mirrors": ["*"]}
}

test_serve_is_not_affected if {
	serve.allow with input as {"action": "serve", "reference": tagged("latest"), "mirrors": ["*"]}
}

test_other_tags_and_digests_pass if {
	resolve.allow with input as {"action": "resolve", "reference": tagged("1.27"), "mirrors": ["*"]}
	resolve.allow with input as {"action": "resolve", "reference": object.union(tagged("latest"), {"digest": "sha256:bb"}), "mirrors": ["*"]}
}

test_enable_latest_shares_latest if {
	resolve.allow with input as {"action": "resolve", "reference": tagged("latest"), "mirrors": ["*"]}
		with data.sluice.settings.enable_latest as true
	advertise.allow with input as {"action": "advertise", "reference": untagged, "mirrors": ["*"]}
		with data.sluice.settings.enable_latest as true
}

test_enable_latest_must_be_boolean_true if {
	not resolve.allow with input as {"action": "resolve", "reference": tagged("latest"), "mirrors": ["*"]}
		with data.sluice.settings.enable_latest as "true"
}

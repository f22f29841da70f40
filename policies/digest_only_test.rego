package sluice.policies_test.digest_only

import rego.v1

import data.sluice.advertise
import data.sluice.resolve
import data.sluice.serve

tag_ref := {"registry": "docker.io", "repository": "library/nginx", "tag": "1.27", "kind": "manifest"}

digest_ref := {"registry": "docker.io", "repository": "library/nginx", "digest": "sha256:aa", "kind": "manifest"}

test_tags_are_refused_for_every_action if {
	every a in ["advertise", "serve", "resolve"] {
		not data.sluice[a].allow with input as {"action": a, "reference": tag_ref, "mirrors": ["*"]}
			with data.sluice.settings.digest_only as true
	}
}

test_digests_are_shared_for_every_action if {
	every a in ["advertise", "serve", "resolve"] {
		data.sluice[a].allow with input as {"action": a, "reference": digest_ref, "mirrors": ["*"]}
			with data.sluice.settings.digest_only as true
	}
}

test_off_by_default if {
	resolve.allow with input as {"action": "resolve", "reference": tag_ref, "mirrors": ["*"]}
	serve.allow with input as {"action": "serve", "reference": tag_ref, "mirrors": ["*"]}
}

test_reason_names_the_setting if {
	some msg in serve.reasons with input as {"action": "serve", "reference": tag_ref, "mirrors": ["*"]}
		with data.sluice.settings.digest_only as true
	startswith(msg, "digest_only:")
}

package sluice.policies_test.fetch

import rego.v1

import data.sluice.fetch

digest_ref := {"registry": "docker.io", "repository": "library/nginx", "digest": "sha256:bb", "kind": "blob"}

tag_ref(tag) := {"registry": "docker.io", "repository": "library/nginx", "tag": tag, "kind": "manifest"}

anonymous := {"endpoint": "https://registry-1.docker.io", "credentials": false}

credentialed := {"endpoint": "https://registry-1.docker.io", "credentials": true}

req(ref, up, mirrors) := {"action": "fetch", "reference": ref, "upstream": up, "mirrors": mirrors}

test_mirrored_registry_is_fetched if {
	fetch.allow with input as req(digest_ref, anonymous, ["docker.io"])
	fetch.allow with input as req(tag_ref("1.27"), anonymous, ["*"])
}

test_unmirrored_registry_is_not if {
	not fetch.allow with input as req(digest_ref, anonymous, ["quay.io"])
	not fetch.allow with input as req(digest_ref, anonymous, [])
}

test_latest_needs_enable_latest if {
	not fetch.allow with input as req(tag_ref("latest"), anonymous, ["*"])
	fetch.allow with input as req(tag_ref("latest"), anonymous, ["*"])
		with data.sluice.settings.enable_latest as true
}

test_digest_only_fetches_digests_only if {
	not fetch.allow with input as req(tag_ref("1.27"), anonymous, ["*"])
		with data.sluice.settings.digest_only as true
	fetch.allow with input as req(digest_ref, anonymous, ["*"])
		with data.sluice.settings.digest_only as true
}

test_credentialed_upstream_is_refused_by_default if {
	not fetch.allow with input as req(digest_ref, credentialed, ["*"])
	some msg in fetch.reasons with input as req(digest_ref, credentialed, ["*"])
	contains(msg, "needs credentials")
}

test_coalesce_credentialed_allows_it if {
	fetch.allow with input as req(digest_ref, credentialed, ["*"])
		with data.sluice.settings.coalesce_credentialed as true
	not fetch.allow with input as req(digest_ref, credentialed, ["*"])
		with data.sluice.settings.coalesce_credentialed as "true"
}

# METADATA
# description: |
#   Decision point "fetch": may the node responsible for a key during a
#   rollout fetch it from the upstream on behalf of a peer (a coalesced
#   first pull)? The decision is allow == true and deny empty. allow holds
#   when no restriction under data.sluice.policies applies (so
#   mirrors, latest and digest_only apply as they do to resolve: only
#   mirrored registries, no :latest unless enable_latest, digests only under
#   digest_only) and the upstream needs no credentials, unless
#   data.sluice.settings.coalesce_credentialed is true: by default a node
#   never hands a peer content it could only fetch with its own pull
#   secret (Spegel #1432). A drop-in may add allow rules (widen) or deny
#   rules (tighten). reasons explains a refusal.
package sluice.fetch

import rego.v1

import data.sluice.lib

default allow := false

# coalesce_credentialed is false unless a data file sets it to true.
default coalesce_credentialed := false

coalesce_credentialed if data.sluice.settings.coalesce_credentialed == true

# credentials_refused holds when the fetch would send credentials and the
# operator did not allow coalescing such registries.
credentials_refused if {
	input.upstream.credentials == true
	not coalesce_credentialed
}

allow if {
	not lib.violated
	not credentials_refused
}

reasons contains msg if {
	not allow
	some msg in lib.violations
}

reasons contains msg if {
	not allow
	credentials_refused
	msg := sprintf("upstream %s needs credentials: content is not fetched on behalf of peers (set data.sluice.settings.coalesce_credentialed to allow it)", [object.get(input, ["upstream", "endpoint"], "")])
}

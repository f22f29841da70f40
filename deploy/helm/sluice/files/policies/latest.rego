# latest: a tag reference whose tag is "latest" or missing is never
# advertised nor resolved from peers, unless
# data.sluice.settings.enable_latest is true. Digest references are not
# affected, and neither is serve (a peer asks by what it resolved).
package sluice.policies

import rego.v1

import data.sluice.lib

# The action is one of advertise, serve, resolve; this reads "not serve"
# as an equality so that rule indexing skips the rule for serve.
restriction contains "latest" if {
	input.action != "serve"
	lib.latest_tag
	not lib.enable_latest
}

message contains msg if {
	"latest" in restriction
	msg := sprintf("latest tag is not shared between nodes: %s (set data.sluice.settings.enable_latest to share it)", [lib.ref_string])
}

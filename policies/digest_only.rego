# digest_only: when data.sluice.settings.digest_only is true, tag
# references are never resolved, served to peers or advertised; digests
# always are. Tags then always go upstream, which defeats tag poisoning.
package sluice.policies

import rego.v1

import data.sluice.lib

restriction contains "digest_only" if {
	lib.digest_only
	lib.tag_reference
}

message contains msg if {
	"digest_only" in restriction
	msg := sprintf("digest_only: tag reference %s is not shared, only digests are", [lib.ref_string])
}

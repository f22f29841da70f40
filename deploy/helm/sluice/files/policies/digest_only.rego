# digest_only: when data.sluice.settings.digest_only is true, tag
# references are never resolved, served to peers or advertised; digests
# always are. Tags then always go upstream, which defeats tag poisoning.
package sluice.policies

import rego.v1

import data.sluice.lib

violation contains msg if {
	lib.digest_only
	lib.tag_reference
	msg := sprintf("digest_only: tag reference %s is not shared, only digests are", [lib.ref_string])
}

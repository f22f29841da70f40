# METADATA
# description: |
#   Decision point "resolve". The decision is allow == true and deny empty.
#   allow holds when no restriction under data.sluice.policies applies
#   (lib.violated); a drop-in file may add allow rules (widen) or deny rules
#   (tighten) to this package. reasons explains a refusal: it is built
#   only when allow does not hold, so its messages (which name the
#   reference) are not read by an allowing decision.
package sluice.resolve

import rego.v1

import data.sluice.lib

default allow := false

allow if not lib.violated

reasons contains msg if {
	not allow
	some msg in lib.violations
}

# METADATA
# description: |
#   Decision point "serve". The decision is allow == true and deny empty.
#   allow holds when no policy under data.sluice.policies reports a
#   violation; a drop-in file may add allow rules (widen) or deny rules
#   (tighten) to this package. reasons explains a refusal.
package sluice.serve

import rego.v1

import data.sluice.lib

default allow := false

allow if count(lib.violations) == 0

reasons contains msg if {
	not allow
	some msg in lib.violations
}

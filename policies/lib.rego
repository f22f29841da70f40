# METADATA
# description: |
#   Helpers shared by the shipped sluice policies: settings with their
#   defaults, registry name folding, reference classification, whether a
#   restriction applies (what every action package's allow reads) and the
#   messages that explain a refusal (read only when it does not allow).
package sluice.lib

import rego.v1

# Registry host names that all mean Docker Hub, folded into docker.io.
docker_aliases := {"index.docker.io": "docker.io", "registry-1.docker.io": "docker.io"}

# canonical(host) folds case and the Docker Hub aliases into one name.
canonical(host) := object.get(docker_aliases, lower(host), lower(host))

# Settings are switched by data (data.sluice.settings.*); each is false
# unless a data file sets it to the boolean true.
default enable_latest := false

enable_latest if data.sluice.settings.enable_latest == true

default digest_only := false

digest_only if data.sluice.settings.digest_only == true

# has_digest holds when the content is named by digest.
has_digest if input.reference.digest != ""

# tag_reference holds when the content is named by tag, or by nothing at all
# (which a registry reads as the tag "latest"): not has_digest, written as
# one expression so that partial evaluation inlines it.
tag_reference if object.get(input, ["reference", "digest"], "") == ""

# latest_tag holds for a tag reference whose tag is "latest" or missing
# (absent, "" or false: what `not input.reference.tag` would accept). One
# rule of plain expressions: partial evaluation at load inlines it into
# the action packages instead of leaving three rules behind.
latest_tag if {
	tag_reference
	object.get(input, ["reference", "tag"], false) in {"latest", "", false}
}

# ref_string is a readable form of input.reference for messages.
ref_string := concat("", [
	object.get(input, ["reference", "registry"], ""), "/",
	object.get(input, ["reference", "repository"], ""),
	tag_suffix, digest_suffix,
])

tag_suffix := concat("", [":", input.reference.tag]) if {
	is_string(input.reference.tag)
	input.reference.tag != ""
} else := ""

digest_suffix := concat("", ["@", input.reference.digest]) if has_digest

else := ""

# violated holds when a restriction of package sluice.policies applies (one
# package, many files: mirrors.rego, latest.rego, digest_only.rego, …): a
# shipped one, named in its `restriction` set, or a drop-in's `violation`.
# An action package's allow rule widens past them, a deny rule tightens
# beyond them.
#
# It reads the names of the shipped restrictions, never their messages:
# a message names the reference (ref_string reads the tag and digest), and
# the decision cache keys a decision by what its allow reads, so a message
# read here would key every blob of an image apart.
violated if some _ in data.sluice.policies.restriction

violated if some _ in data.sluice.policies.violation

# violations are the messages of a refusal: the `message` set of the
# shipped restrictions and the drop-ins' `violation` set. The action
# packages read them only when they do not allow.
violations contains msg if some msg in data.sluice.policies.message

violations contains msg if some msg in data.sluice.policies.violation

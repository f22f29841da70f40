package oci

// CoalesceHeader marks a peer request sent to the node responsible for a
// key during a rollout (issue 11): the requester found no provider, and
// asks that node to fetch the content from the upstream once for everyone
// (if its fetch policy allows) and stream it. It is sent beside the peer
// header (core/registry.PeerHeader) and means nothing without it.
const CoalesceHeader = "Sluice-Coalesce"

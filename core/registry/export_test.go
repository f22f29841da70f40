package registry

// VerifyGrace is verifyGrace, for the external tests.
const VerifyGrace = verifyGrace

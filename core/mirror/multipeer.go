package mirror

// defaultParallel is how many providers a large blob is fetched from at
// once by default (--peer-fetch-parallel).
const defaultParallel = 3

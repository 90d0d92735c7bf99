//go:build !unix

package journal

// mapKeys falls back to the heap where anonymous mappings are not available.
func mapKeys(n int) []byte { return make([]byte, n) }

func unmapKeys([]byte) {}

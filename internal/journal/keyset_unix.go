//go:build unix

package journal

import (
	"fmt"
	"syscall"
)

// mapKeys returns n zeroed bytes of anonymous memory outside the Go heap. Pages are backed only
// once written.
func mapKeys(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		// Out of address space or memory: like a failed heap allocation, nothing to recover.
		panic(fmt.Sprintf("journal: map %d bytes for dedupe keys: %v", n, err))
	}
	return b
}

func unmapKeys(b []byte) {
	if err := syscall.Munmap(b); err != nil {
		panic(fmt.Sprintf("journal: unmap dedupe keys: %v", err))
	}
}

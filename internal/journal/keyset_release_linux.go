package journal

import "syscall"

// releaseKeys hands the pages of b, part of a table being dropped, back to the system at once;
// b reads as zeros afterwards.
func releaseKeys(b []byte) { _ = syscall.Madvise(b, syscall.MADV_DONTNEED) }

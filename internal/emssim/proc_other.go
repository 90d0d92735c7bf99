//go:build !linux

package emssim

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttrs leaves ffmpeg's process attributes as they are outside Linux.
func setProcAttrs(*exec.Cmd) {}

// signalGroup signals ffmpeg itself (interrupt or kill) outside Linux.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process == nil {
		return
	}
	if sig == syscall.SIGKILL {
		_ = cmd.Process.Kill()
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
}

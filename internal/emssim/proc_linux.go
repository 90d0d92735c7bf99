package emssim

import (
	"os/exec"
	"syscall"
)

// setProcAttrs puts ffmpeg in its own process group (so stopping it reaches every child) and
// has the kernel kill it if the simulator dies first: no orphans.
func setProcAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup signals ffmpeg's process group.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, sig)
	}
}

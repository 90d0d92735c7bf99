package emssim

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/emsflow/emsflow/internal/logfield"
)

const pollInterval = 100 * time.Millisecond

// output is one media writer: it names ffmpeg's arguments for a staging folder, and turns what
// ffmpeg finished there into EMS's files and events.
type output interface {
	// args are ffmpeg's output arguments, writing into staging.
	args(staging string) []string
	// begin runs before ffmpeg starts.
	begin()
	// poll moves finished files into place and logs their events; final is set once ffmpeg
	// has exited and flushed its last segment.
	poll(final bool)
	// finish runs after the final poll; removeFiles asks to delete the output's files
	// (removeConfig removeHlsHdsFiles=1).
	finish(removeFiles bool)
}

// job runs one ffmpeg process for one output stream.
type job struct {
	s           *Sim
	out         output
	staging     string
	stopCh      chan struct{}
	once        sync.Once
	onClosed    func()
	removeFiles bool // set under Sim.mu before stop
	mu          sync.Mutex
}

// sourceArgs is the synthetic live source: lavfi testsrc and sine, paced in real time, encoded
// cheaply with a keyframe every gop frames so segments cut on time.
func (s *Sim) sourceArgs(gop int) []string {
	g := strconv.Itoa(gop)
	return []string{
		"-hide_banner", "-loglevel", "error", "-nostdin", "-y",
		"-re", "-f", "lavfi", "-i", fmt.Sprintf("testsrc=size=320x240:rate=%d", s.cfg.FPS),
		"-re", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
		"-pix_fmt", "yuv420p", "-g", g, "-keyint_min", g, "-sc_threshold", "0", "-b:v", "150k",
		"-c:a", "aac", "-b:a", "48k", "-ac", "1", "-threads", "1",
	}
}

// startJob starts the output's ffmpeg in a fresh staging folder and polls it until stopped.
func (s *Sim) startJob(out output, gop int) *job {
	j := &job{s: s, out: out, stopCh: make(chan struct{})}
	dir, err := os.MkdirTemp(s.staging, "job-")
	if err != nil {
		s.logEmitErr(err, "create job staging folder")
	}
	j.staging = dir
	args := append(s.sourceArgs(gop), out.args(dir)...)
	s.goOwned(func() { j.run(args) })
	return j
}

// stop asks the job to finish: ffmpeg is interrupted (it flushes its last segment), the last
// files are moved and announced, then onClosed runs. It does not wait.
func (j *job) stop(onClosed func()) {
	j.once.Do(func() {
		j.mu.Lock()
		j.onClosed = onClosed
		j.mu.Unlock()
		close(j.stopCh)
	})
}

func (j *job) run(args []string) {
	s := j.s
	defer os.RemoveAll(j.staging)
	j.out.begin()
	var stderr bytes.Buffer
	cmd := exec.Command(s.cfg.FFmpeg, args...)
	cmd.Dir = j.staging
	cmd.Stderr = &limitedWriter{w: &stderr, n: 8 << 10}
	setProcAttrs(cmd)
	exited := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		s.logEmitErr(err, "start ffmpeg")
		exited <- err
	} else {
		s.mu.Lock()
		s.pids = append(s.pids, cmd.Process.Pid)
		s.mu.Unlock()
		go func() { exited <- cmd.Wait() }()
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	running := true
loop:
	for {
		select {
		case <-t.C:
			if running {
				j.out.poll(false)
			}
		case err := <-exited:
			// ffmpeg died on its own: announce what it finished, then wait to be stopped.
			running = false
			s.log.Warn().Err(err).Str(logfield.Reason, stderr.String()).Msg("ffmpeg exited early")
			j.out.poll(true)
		case <-j.stopCh:
			break loop
		}
	}
	if running {
		signalGroup(cmd, syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			signalGroup(cmd, syscall.SIGKILL)
			<-exited
		}
		j.out.poll(true)
	}
	s.mu.Lock()
	remove := j.removeFiles
	s.mu.Unlock()
	j.out.finish(remove)
	j.mu.Lock()
	f := j.onClosed
	j.mu.Unlock()
	if f != nil {
		f()
	}
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		_, _ = l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// moveFile puts a finished file at dst atomically: a rename, or across file systems a copy to
// a hidden temporary beside dst and a rename.
func moveFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("create folder for %s: %w", dst, err)
	}
	if err := os.Rename(src, dst); err == nil {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	if err := writeFileAtomic(dst, data); err != nil {
		return err
	}
	return os.Remove(src)
}

// writeFileAtomic writes data to a hidden temporary beside path and renames it into place, so
// a reader sees the old or the new content, never a partial one.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create folder for %s: %w", path, err)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return nil
}

// startOutputLocked creates the output stream of an HLS/HDS/DASH/record config reading in,
// logs outStreamCreated and starts its ffmpeg.
func (s *Sim) startOutputLocked(c *config, in *stream) {
	chunk := 10
	if v, ok := c.settings["chunkLength"].(uint64); ok && v > 0 {
		chunk = int(v)
	}
	var (
		typ string
		op  int
		out output
	)
	switch c.kind {
	case "hls":
		typ, op = "OFHLS", opHLS
		out = s.newHLSOut(c)
	case "hds":
		typ, op = "OFHDS", opHDS
		out = s.newHDSOut(c)
	case "dash":
		typ, op = "OFDASH", opDASH
		out = s.newDASHOut(c)
	case "record":
		op = opRecord
		typ = map[string]string{"mp4": "OFMP4", "ts": "OFTS", "flv": "OFRFLV"}[c.settings["type"].(string)]
		out = s.newRecordOut(c)
		if chunk == 10 && c.settings["chunkLength"].(uint64) == 0 {
			chunk = 2
		}
	default:
		return
	}
	st := s.newStreamLocked(c.name, typ, op, in, c)
	c.setStatus(statusStreaming, s.now(), st.id)
	s.em.emit("outStreamCreated", s.statsLocked(st, true))
	st.job = s.startJob(out, s.cfg.FPS*chunk)
}

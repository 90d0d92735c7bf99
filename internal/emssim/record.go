package emssim

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// mp4BinPath is where recordSettings says EMS's MP4 assembler lives (reference §1.6.2).
const mp4BinPath = "/usr/bin/evo-mp4writer"

// recordOut writes a record config's files: pathToFile plus the type's extension, numbered
// _0001... when the file exists and overwrite=0, split into _part0000... when chunkLength>0,
// or <pathToFile>/<stream>/<YYYYMMDD>/<stream>-<YYYYMMDD>-<HHMMSS>.<type> with
// dateFolderStructure=1 (reference §1.6.2). MP4 files appear only once EMS's evo-mp4writer
// has assembled them: processStarted, recordChunkClosed, the file, then processStopped.
type recordOut struct {
	s       *Sim
	c       *config
	typ     string
	vars    obj
	chunked bool
	session int // the _NNNN number chosen when the recording started
	part    int
	cur     string
	start   time.Time
	staging string
	seen    int
}

func (s *Sim) newRecordOut(c *config) *recordOut {
	o := &recordOut{s: s, c: c, typ: c.settings["type"].(string), vars: obj{}, chunked: c.settings["chunkLength"].(uint64) > 0}
	for k, v := range c.settings {
		if strings.HasPrefix(k, "_") {
			o.vars[k] = v
		}
	}
	o.session = s.recordSessionLocked(c)
	o.cur = s.recordPathLocked(c, o.session, 0)
	s.reserved[o.cur] = true
	c.settings["computedPathToFile"] = o.cur
	o.start = s.now()
	return o
}

// recordBase is pathToFile without the type's extension.
func recordBase(c *config) (base, ext string) {
	ext = "." + c.settings["type"].(string)
	return strings.TrimSuffix(c.settings["pathToFile"].(string), ext), ext
}

// recordPathLocked returns the file of one part of one recording session.
func (s *Sim) recordPathLocked(c *config, session, part int) string {
	base, ext := recordBase(c)
	base = s.resolvePath(base)
	if c.settings["dateFolderStructure"] == true {
		now := s.now()
		day := now.Format("20060102")
		return filepath.Join(base, folderName(c.name), day, fmt.Sprintf("%s-%s-%s%s", folderName(c.name), day, now.Format("150405"), ext))
	}
	p := base
	if session > 0 {
		p += fmt.Sprintf("_%04d", session)
	}
	if c.settings["chunkLength"].(uint64) > 0 {
		p += fmt.Sprintf("_part%04d", part)
	}
	return p + ext
}

// recordSessionLocked picks the session number: 0, or with overwrite=0 the first whose first
// file neither exists nor is being written.
func (s *Sim) recordSessionLocked(c *config) int {
	if c.settings["overwrite"] == true {
		return 0
	}
	for n := 0; ; n++ {
		p := s.recordPathLocked(c, n, 0)
		if _, err := os.Stat(p); err != nil && !s.reserved[p] {
			return n
		}
	}
}

func (o *recordOut) args(staging string) []string {
	o.staging = staging
	seg := "31536000"
	if o.chunked {
		seg = strconv.FormatUint(o.c.settings["chunkLength"].(uint64), 10)
	}
	format := map[string]string{"mp4": "mp4", "ts": "mpegts", "flv": "flv"}[o.typ]
	return []string{
		"-f", "segment", "-segment_time", seg, "-segment_format", format, "-reset_timestamps", "1",
		"-segment_list", filepath.Join(staging, "list.csv"), "-segment_list_type", "csv",
		filepath.Join(staging, "part%05d."+o.typ),
	}
}

func (o *recordOut) begin() {
	o.s.logEmitErr(os.MkdirAll(filepath.Dir(o.cur), 0o755), "create record folder")
	o.s.em.emit("recordChunkCreated", o.payload(obj{"file": o.cur, "startTime": emsTime(o.start)}))
}

func (o *recordOut) payload(p obj) obj {
	for k, v := range o.vars {
		p[k] = v
	}
	return p
}

func (o *recordOut) poll(final bool) {
	data, err := os.ReadFile(filepath.Join(o.staging, "list.csv"))
	if err != nil {
		return
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	for i := o.seen; i < len(lines); i++ {
		name, rest, _ := strings.Cut(lines[i], ",")
		startS, endS, _ := strings.Cut(rest, ",")
		st, _ := strconv.ParseFloat(startS, 64)
		en, _ := strconv.ParseFloat(endS, 64)
		o.seen = i + 1
		last := final && i == len(lines)-1
		o.closeFile(filepath.Join(o.staging, name), en-st, last)
	}
}

func (o *recordOut) closeFile(src string, dur float64, final bool) {
	s := o.s
	stop := s.now()
	closedPayload := o.payload(obj{
		"file": o.cur, "startTime": emsTime(o.start), "stopTime": emsTime(stop),
		"frameCount": int(dur * float64(s.cfg.FPS)),
	})
	if o.typ == "mp4" {
		s.mu.Lock()
		procID := s.nextConfigID
		s.nextConfigID++
		s.mu.Unlock()
		proc := obj{
			"arguments": "-path=" + o.cur, "configId": procID, "fullBinaryPath": mp4BinPath,
			"keepAlive": false, "operationType": opProcess,
		}
		s.em.emit("processStarted", proc)
		s.em.emit("recordChunkClosed", closedPayload)
		s.logEmitErr(moveFile(src, o.cur), "move record file")
		s.em.emit("processStopped", proc)
	} else {
		s.logEmitErr(moveFile(src, o.cur), "move record file")
		s.em.emit("recordChunkClosed", closedPayload)
	}
	s.mu.Lock()
	delete(s.reserved, o.cur)
	if !final {
		o.part++
		o.cur = s.recordPathLocked(o.c, o.session, o.part)
		s.reserved[o.cur] = true
		o.c.settings["computedPathToFile"] = o.cur
	}
	s.mu.Unlock()
	o.start = stop
	if !final {
		s.logEmitErr(os.MkdirAll(filepath.Dir(o.cur), 0o755), "create record folder")
		s.em.emit("recordChunkCreated", o.payload(obj{"file": o.cur, "startTime": emsTime(o.start)}))
	}
}

func (o *recordOut) finish(bool) {
	o.s.mu.Lock()
	delete(o.s.reserved, o.cur)
	o.s.mu.Unlock()
}

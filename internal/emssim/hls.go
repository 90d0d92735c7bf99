package emssim

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// masterState is what a group-level master playlist or manifest lists: stream folder name →
// bandwidth.
type masterState struct {
	streams map[string]int64
}

// hlsOut writes one stream of an HLS group: segments and the child playlist in
// <targetFolder>/<groupName>/<stream>/, the master playlist at group level (reference §1.6.2).
type hlsOut struct {
	s            *Sim
	dir          string // the stream folder
	groupDir     string
	folder       string // the stream folder's name
	playlist     string // child playlist path
	playlistName string
	base         string
	bandwidth    int64
	chunkLength  uint64
	rolling      bool
	window       int
	staleKeep    int
	master       bool
	cleanup      bool
	cleanupClose bool

	createdMs  int64
	staging    string
	lastSeq    int
	seq        uint64
	mediaSeq   uint64
	entries    []hlsEntry
	stale      []string
	segStartMs float64
	next       string // placeholder of the segment being written
	wroteMast  bool
}

type hlsEntry struct {
	name string
	dur  float64
}

func (s *Sim) newHLSOut(c *config) *hlsOut {
	st := c.settings
	o := &hlsOut{
		s: s, dir: st["targetFolder"].(string), playlistName: st["playlistName"].(string),
		base: st["chunkBaseName"].(string), bandwidth: st["bandwidth"].(int64),
		chunkLength: st["chunkLength"].(uint64), rolling: st["playlistType"] == "rolling",
		window: int(st["playlistLength"].(uint64)), staleKeep: int(st["staleRetentionCount"].(uint64)),
		master: st["createMasterPlaylist"].(bool), cleanup: st["cleanupDestination"].(bool),
		cleanupClose: st["cleanupOnClose"].(bool),
		createdMs:    s.now().UnixMilli(), lastSeq: -1, seq: 1,
	}
	o.groupDir = filepath.Dir(o.dir)
	o.folder = filepath.Base(o.dir)
	o.playlist = filepath.Join(o.dir, o.playlistName)
	return o
}

func (o *hlsOut) args(staging string) []string {
	o.staging = staging
	return []string{
		"-f", "hls", "-hls_time", strconv.FormatUint(o.chunkLength, 10), "-hls_list_size", "20",
		"-hls_flags", "temp_file", "-hls_segment_filename", filepath.Join(staging, "seg_%d.ts"),
		filepath.Join(staging, "index.m3u8"),
	}
}

func (o *hlsOut) segName(seq uint64) string {
	return filepath.Join(o.dir, fmt.Sprintf("%s_%d_%d.ts", o.base, o.createdMs, seq))
}

func (o *hlsOut) begin() {
	if o.cleanup {
		_ = os.RemoveAll(o.dir)
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		o.s.logEmitErr(err, "create hls folder")
	}
	o.openNext()
}

// openNext announces the segment now being written; like EMS, its file exists (empty) while
// it is written.
func (o *hlsOut) openNext() {
	o.next = o.segName(o.seq)
	o.s.logEmitErr(os.WriteFile(o.next, nil, 0o644), "create hls segment")
	o.s.em.emit("hlsChunkCreated", obj{
		"file": o.next, "playlistStartTs": double(o.createdMs), "segmentStartTs": double(o.segStartMs),
	})
}

func (o *hlsOut) poll(final bool) {
	segs := parseM3U8(filepath.Join(o.staging, "index.m3u8"))
	for _, sg := range segs {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(sg.name, "seg_"), ".ts"))
		if err != nil || n <= o.lastSeq {
			continue
		}
		o.lastSeq = n
		o.closeSegment(filepath.Join(o.staging, sg.name), sg.dur, final)
	}
	if final && o.next != "" {
		_ = os.Remove(o.next)
		o.next = ""
	}
}

func (o *hlsOut) closeSegment(src string, dur float64, final bool) {
	s := o.s
	dst := o.segName(o.seq)
	if err := moveFile(src, dst); err != nil {
		s.logEmitErr(err, "move hls segment")
		return
	}
	o.next = ""
	o.entries = append(o.entries, hlsEntry{name: filepath.Base(dst), dur: dur})
	var deleted []string
	if o.rolling {
		for len(o.entries) > o.window {
			o.stale = append(o.stale, filepath.Join(o.dir, o.entries[0].name))
			o.entries = o.entries[1:]
			o.mediaSeq++
		}
		for len(o.stale) > o.staleKeep {
			deleted = append(deleted, o.stale[0])
			o.stale = o.stale[1:]
		}
	}
	s.logEmitErr(writeFileAtomic(o.playlist, o.childPlaylist()), "write hls child playlist")
	// EMS rewrites the child playlist and logs hlsChildPlaylistUpdated before hlsChunkClosed
	// (reference §1.6.2).
	s.em.emit("hlsChildPlaylistUpdated", obj{"file": o.playlist})
	s.em.emit("hlsChunkClosed", obj{
		"file": dst, "playlistStartTs": double(o.createdMs), "segmentStartTs": double(o.segStartMs),
		"segmentDuration": double(dur * 1000),
	})
	for _, f := range deleted {
		if err := os.Remove(f); err == nil {
			s.em.emit("hlsChunkDeleted", obj{"file": f})
		}
	}
	if o.master && !o.wroteMast {
		o.wroteMast = true
		path := filepath.Join(o.groupDir, "playlist.m3u8")
		s.logEmitErr(s.writeMaster(o.groupDir, o.folder, o.bandwidth, func(m *masterState) []byte {
			return hlsMaster(m, o.playlistName)
		}, path), "write hls master playlist")
		s.em.emit("hlsMasterPlaylistUpdated", obj{"file": path})
	}
	o.segStartMs += dur * 1000
	o.seq++
	if !final {
		o.openNext()
	}
}

func (o *hlsOut) childPlaylist() []byte {
	var b bytes.Buffer
	target := float64(o.chunkLength)
	for _, e := range o.entries {
		target = math.Max(target, e.dur)
	}
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:%d\n",
		int(math.Ceil(target)), o.mediaSeq)
	for _, e := range o.entries {
		fmt.Fprintf(&b, "#EXTINF:%.6f,\n%s\n", e.dur, e.name)
	}
	return b.Bytes()
}

func (o *hlsOut) finish(removeFiles bool) {
	if removeFiles || o.cleanupClose {
		_ = os.RemoveAll(o.dir)
	}
}

// writeMaster records a stream in a group's master and rewrites it.
func (s *Sim) writeMaster(groupDir, folder string, bw int64, render func(*masterState) []byte, path string) error {
	s.mu.Lock()
	m := s.masters[path]
	if m == nil {
		m = &masterState{streams: map[string]int64{}}
		s.masters[path] = m
	}
	m.streams[folder] = bw
	data := render(m)
	s.mu.Unlock()
	return writeFileAtomic(path, data)
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func hlsMaster(m *masterState, child string) []byte {
	var b bytes.Buffer
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n")
	for _, k := range sortedKeys(m.streams) {
		bw := m.streams[k]
		if bw <= 0 {
			bw = 250000 // a master needs a BANDWIDTH; EMS's default bandwidth is 0
		}
		fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d\n%s/%s\n", bw, k, child)
	}
	return b.Bytes()
}

type m3u8Seg struct {
	name string
	dur  float64
}

// parseM3U8 reads ffmpeg's playlist: the segments it lists are complete on disk.
func parseM3U8(path string) []m3u8Seg {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []m3u8Seg
	dur := 0.0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "#EXTINF:"):
			v, _, _ := strings.Cut(strings.TrimPrefix(line, "#EXTINF:"), ",")
			dur, _ = strconv.ParseFloat(v, 64)
		case line == "" || strings.HasPrefix(line, "#"):
		default:
			out = append(out, m3u8Seg{name: line, dur: dur})
		}
	}
	return out
}

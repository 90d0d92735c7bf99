package emssim

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// dashOut writes one stream of a DASH group in the EMS 2.0 layout (reference §1.6.2): the
// manifest at <targetFolder>/<groupName>/<manifestName>, segments in
// <stream>/{video,audio}/<bandwidth>/<time>.fmp4, init segments seg_init.mp4 beside them.
// ffmpeg's dash muxer writes into staging; the manifest is rewritten to point at those paths.
type dashOut struct {
	s           *Sim
	c           *config
	dir         string
	manifest    string
	folder      string
	bw          string
	chunkLength uint64
	rolling     bool
	window      int
	staleKeep   int
	staging     string

	started  time.Time
	inits    map[string]bool   // rep id → init moved
	done     map[string]bool   // "rep/number" → moved
	live     map[string]string // "rep/number" → final path, while in the manifest
	stale    []string          // final paths out of the manifest, oldest first
	initIDs  map[string]uint64 // rep id → uniqueId of its segInitwriter
	repKinds map[string]string // rep id → video|audio
}

func (s *Sim) newDASHOut(c *config) *dashOut {
	st := c.settings
	return &dashOut{
		s: s, c: c, dir: st["targetFolder"].(string), manifest: st["manifestAbsolutePath"].(string),
		bw: fmt.Sprint(st["bandwidth"]), chunkLength: st["chunkLength"].(uint64),
		rolling: st["playlistType"] == "rolling", window: int(st["playlistLength"].(uint64)),
		staleKeep: int(st["staleRetentionCount"].(uint64)), started: s.now(),
		inits: map[string]bool{}, done: map[string]bool{}, live: map[string]string{},
		initIDs: map[string]uint64{}, repKinds: map[string]string{},
	}
}

func (o *dashOut) args(staging string) []string {
	o.staging = staging
	o.folder = filepath.Base(o.dir)
	window := "0"
	if o.rolling {
		window = strconv.Itoa(o.window)
	}
	return []string{
		"-f", "dash", "-seg_duration", strconv.FormatUint(o.chunkLength, 10),
		"-use_template", "1", "-use_timeline", "1", "-window_size", window, "-extra_window_size", "0",
		"-adaptation_sets", "id=0,streams=v id=1,streams=a",
		"-init_seg_name", "init-$RepresentationID$.m4s",
		"-media_seg_name", "chunk-$RepresentationID$-$Number%05d$.m4s",
		filepath.Join(staging, "manifest.mpd"),
	}
}

func (o *dashOut) begin() {
	if o.c.settings["cleanupDestination"] == true {
		_ = os.RemoveAll(o.dir)
	}
	o.s.logEmitErr(os.MkdirAll(o.dir, 0o755), "create dash folder")
}

var (
	reRep      = regexp.MustCompile(`(?s)<Representation\s[^>]*?id="([^"]+)"[^>]*?mimeType="([a-z]+)/`)
	reTemplate = regexp.MustCompile(`(?s)<SegmentTemplate[^>]*?startNumber="(\d+)"[^>]*>(.*?)</SegmentTemplate>`)
	reS        = regexp.MustCompile(`<S\s([^>]*)/>`)
	reAttr     = regexp.MustCompile(`(\w+)="(-?\d+)"`)
)

type dashSeg struct {
	rep    string
	number int
	t, d   int64
}

// parseMPD reads ffmpeg's manifest: per representation, the kind and the segments of its
// timeline with their numbers and start times. Listed segments are complete on disk.
func parseMPD(mpd string) (kinds map[string]string, segs []dashSeg) {
	kinds = map[string]string{}
	parts := strings.Split(mpd, "<Representation ")
	for _, p := range parts[1:] {
		p = "<Representation " + p
		m := reRep.FindStringSubmatch(p)
		if m == nil {
			continue
		}
		rep := m[1]
		kinds[rep] = m[2]
		tm := reTemplate.FindStringSubmatch(p)
		if tm == nil {
			continue
		}
		num, _ := strconv.Atoi(tm[1])
		var t int64
		for _, sm := range reS.FindAllStringSubmatch(tm[2], -1) {
			attrs := map[string]int64{}
			for _, am := range reAttr.FindAllStringSubmatch(sm[1], -1) {
				v, _ := strconv.ParseInt(am[2], 10, 64)
				attrs[am[1]] = v
			}
			if v, ok := attrs["t"]; ok {
				t = v
			}
			d := attrs["d"]
			for i := int64(0); i <= attrs["r"]; i++ {
				segs = append(segs, dashSeg{rep: rep, number: num, t: t, d: d})
				num++
				t += d
			}
		}
	}
	return kinds, segs
}

func (o *dashOut) repDir(rep string) string {
	kind := o.repKinds[rep]
	if kind == "" {
		kind = "video"
	}
	return filepath.Join(o.dir, kind, o.bw)
}

func (o *dashOut) poll(final bool) {
	s := o.s
	raw, err := os.ReadFile(filepath.Join(o.staging, "manifest.mpd"))
	if err != nil {
		return
	}
	mpd := string(raw)
	kinds, segs := parseMPD(mpd)
	for rep, k := range kinds {
		o.repKinds[rep] = k
	}
	var closed []dashSeg
	listed := map[string]bool{}
	for _, sg := range segs {
		key := sg.rep + "/" + strconv.Itoa(sg.number)
		listed[key] = true
		if o.done[key] {
			continue
		}
		if !o.inits[sg.rep] {
			src := filepath.Join(o.staging, "init-"+sg.rep+".m4s")
			dst := filepath.Join(o.repDir(sg.rep), "seg_init.mp4")
			if err := moveFile(src, dst); err != nil {
				continue
			}
			o.inits[sg.rep] = true
			o.announceInit(sg.rep, dst)
		}
		src := filepath.Join(o.staging, fmt.Sprintf("chunk-%s-%05d.m4s", sg.rep, sg.number))
		dst := filepath.Join(o.repDir(sg.rep), strconv.FormatInt(sg.t, 10)+".fmp4")
		if err := moveFile(src, dst); err != nil {
			continue
		}
		o.done[key] = true
		o.live[key] = dst
		closed = append(closed, sg)
	}
	// Segments that left ffmpeg's window become stale; beyond staleRetentionCount they are
	// deleted.
	var gone []string
	for key, path := range o.live {
		if !listed[key] {
			gone = append(gone, path)
			delete(o.live, key)
		}
	}
	sortByTime(gone)
	o.stale = append(o.stale, gone...)
	var deleted []string
	for len(o.stale) > o.staleKeep*2 { // two representations share the retention count
		deleted = append(deleted, o.stale[0])
		o.stale = o.stale[1:]
	}
	if len(closed) == 0 && len(deleted) == 0 {
		return
	}
	s.logEmitErr(writeFileAtomic(o.manifest, []byte(o.rewrite(mpd))), "write dash manifest")
	s.em.emit("dashPlaylistUpdated", obj{"file": o.manifest})
	for _, sg := range closed {
		start := o.started.Add(time.Duration(float64(sg.t) / o.timescale(mpd, sg.rep) * float64(time.Second)))
		stop := start.Add(time.Duration(float64(sg.d) / o.timescale(mpd, sg.rep) * float64(time.Second)))
		frames := int(stop.Sub(start).Seconds() * float64(s.cfg.FPS))
		if o.repKinds[sg.rep] == "audio" {
			frames = int(stop.Sub(start).Seconds() * 44100 / 1024)
		}
		s.em.emit("dashChunkClosed", obj{
			"file":      filepath.Join(o.repDir(sg.rep), strconv.FormatInt(sg.t, 10)+".fmp4"),
			"startTime": emsTime(start), "stopTime": emsTime(stop), "frameCount": frames,
		})
	}
	for _, f := range deleted {
		if err := os.Remove(f); err == nil {
			s.em.emit("dashChunkDeleted", obj{"file": f})
		}
	}
}

func sortByTime(paths []string) {
	key := func(p string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSuffix(filepath.Base(p), ".fmp4"), 10, 64)
		return n
	}
	for i := 1; i < len(paths); i++ {
		for j := i; j > 0 && key(paths[j]) < key(paths[j-1]); j-- {
			paths[j], paths[j-1] = paths[j-1], paths[j]
		}
	}
}

var reTimescale = regexp.MustCompile(`timescale="(\d+)"`)

func (o *dashOut) timescale(mpd, rep string) float64 {
	for _, p := range strings.Split(mpd, "<Representation ")[1:] {
		if m := reRep.FindStringSubmatch("<Representation " + p); m != nil && m[1] == rep {
			if ts := reTimescale.FindStringSubmatch(p); ts != nil {
				v, _ := strconv.ParseFloat(ts[1], 64)
				if v > 0 {
					return v
				}
			}
		}
	}
	return 1000
}

// rewrite points ffmpeg's manifest at the EMS layout, relative to the group folder.
func (o *dashOut) rewrite(mpd string) string {
	parts := strings.Split(mpd, "<Representation ")
	for i := 1; i < len(parts); i++ {
		m := reRep.FindStringSubmatch("<Representation " + parts[i])
		if m == nil {
			continue
		}
		rel := o.folder + "/" + o.repKinds[m[1]] + "/" + o.bw + "/"
		parts[i] = strings.Replace(parts[i], `initialization="init-$RepresentationID$.m4s"`, `initialization="`+rel+`seg_init.mp4"`, 1)
		parts[i] = strings.Replace(parts[i], `media="chunk-$RepresentationID$-$Number%05d$.m4s"`, `media="`+rel+`$Time$.fmp4"`, 1)
	}
	return strings.Join(parts, "<Representation ")
}

// announceInit logs the outStreamCreated of EMS 2.0's internal init-segment writer (an OFMP4
// stream named segInitwriter whose recordSettings.computedPathToFile is the init segment,
// reference §1.6.1); the file is complete when the event is logged.
func (o *dashOut) announceInit(rep, path string) {
	s := o.s
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextStreamID
	s.nextStreamID++
	o.initIDs[rep] = id
	now := s.now()
	s.em.emit("outStreamCreated", obj{
		"appName": "evostreamms", "bandwidth": 0, "connectionType": opRecord,
		"creationTimestamp": msDouble(now), "farIp": "", "farPort": 0, "inStreamUniqueId": nil, "ip": "",
		"name": "segInitwriter", "nearIp": "", "nearPort": 0, "port": 0, "processId": s.cfg.ProcessID,
		"processType": "origin", "queryTimestamp": msDouble(now), "type": "OFMP4",
		"typeNumeric": tagNumeric("OFMP4"), "uniqueId": id, "upTime": double(0),
		"recordSettings": obj{"chunkLength": o.chunkLength, "computedPathToFile": path},
	})
}

func (o *dashOut) finish(removeFiles bool) {
	if removeFiles {
		_ = os.RemoveAll(o.dir)
		_ = os.Remove(o.manifest)
	}
}

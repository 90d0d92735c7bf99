package emssim

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// hdsOut writes one stream of an HDS group: fragments <chunkBaseName>Seg1-FragN and the
// bootstrap in <targetFolder>/<groupName>/<stream>/, the child manifest <manifestName>.f4m in
// the stream folder, and the master <manifestName>.f4m and <manifestName>_v1.f4m at group level
// (reference §1.6.2, §4.4). ffmpeg's hds muxer writes into staging.
type hdsOut struct {
	s           *Sim
	c           *config
	dir         string
	groupDir    string
	folder      string
	base        string
	manifest    string
	chunkLength uint64
	rolling     bool
	window      int
	staleKeep   int
	staging     string
	started     time.Time

	lastFrag  int
	moved     []string
	wroteMeta bool
	fragStart time.Time
}

func (s *Sim) newHDSOut(c *config) *hdsOut {
	st := c.settings
	o := &hdsOut{
		s: s, c: c, dir: st["targetFolder"].(string), base: st["chunkBaseName"].(string),
		manifest: st["manifestName"].(string), chunkLength: st["chunkLength"].(uint64),
		rolling: st["playlistType"] == "rolling", window: int(st["playlistLength"].(uint64)),
		staleKeep: int(st["staleRetentionCount"].(uint64)), started: s.now(),
	}
	o.groupDir, o.folder = filepath.Dir(o.dir), filepath.Base(o.dir)
	o.fragStart = o.started
	return o
}

func (o *hdsOut) args(staging string) []string {
	o.staging = staging
	window := "0"
	if o.rolling {
		window = strconv.Itoa(o.window)
	}
	return []string{
		"-f", "hds", "-window_size", window, "-extra_window_size", "0",
		"-min_frag_duration", strconv.FormatUint(o.chunkLength*1000000, 10),
		filepath.Join(staging, "out"),
	}
}

func (o *hdsOut) begin() {
	if o.c.settings["cleanupDestination"] == true {
		_ = os.RemoveAll(o.dir)
	}
	o.s.logEmitErr(os.MkdirAll(o.dir, 0o755), "create hds folder")
}

var reFrag = regexp.MustCompile(`^stream0Seg1-Frag(\d+)$`)

func (o *hdsOut) poll(final bool) {
	s := o.s
	out := filepath.Join(o.staging, "out")
	// Read the bootstrap before listing: ffmpeg renames a fragment into place before it
	// rewrites the bootstrap, so this bootstrap names no fragment the listing lacks.
	abst, err := os.ReadFile(filepath.Join(out, "stream0.abst"))
	if err != nil {
		return
	}
	ents, _ := os.ReadDir(out)
	var frags []int
	for _, e := range ents {
		if m := reFrag.FindStringSubmatch(e.Name()); m != nil {
			n, _ := strconv.Atoi(m[1])
			if n > o.lastFrag {
				frags = append(frags, n)
			}
		}
	}
	if len(frags) == 0 {
		return
	}
	sort.Ints(frags)
	type closedFrag struct {
		path        string
		start, stop time.Time
	}
	var closed []closedFrag
	for _, n := range frags {
		dst := filepath.Join(o.dir, fmt.Sprintf("%sSeg1-Frag%d", o.base, n))
		if err := moveFile(filepath.Join(out, fmt.Sprintf("stream0Seg1-Frag%d", n)), dst); err != nil {
			s.logEmitErr(err, "move hds fragment")
			break
		}
		o.lastFrag = n
		o.moved = append(o.moved, dst)
		stop := s.now()
		closed = append(closed, closedFrag{path: dst, start: o.fragStart, stop: stop})
		o.fragStart = stop
	}
	s.logEmitErr(writeFileAtomic(filepath.Join(o.dir, "bootstrap"), abst), "write hds bootstrap")
	child := filepath.Join(o.dir, o.manifest+".f4m")
	first := !o.wroteMeta
	if first {
		o.wroteMeta = true
		idx, _ := os.ReadFile(filepath.Join(out, "index.f4m"))
		s.logEmitErr(writeFileAtomic(child, o.childManifest(idx)), "write hds child manifest")
	}
	for _, f := range closed {
		frames := int(f.stop.Sub(f.start).Seconds() * float64(s.cfg.FPS))
		s.em.emit("hdsChunkClosed", obj{"file": f.path, "startTime": emsTime(f.start), "stopTime": emsTime(f.stop), "frameCount": frames})
	}
	if first {
		s.em.emit("hdsChildPlaylistUpdated", obj{"file": child})
		if o.c.settings["createMasterPlaylist"] == true {
			master := filepath.Join(o.groupDir, o.manifest+".f4m")
			v1 := filepath.Join(o.groupDir, o.manifest+"_v1.f4m")
			bw := o.c.settings["bandwidth"].(int64)
			s.logEmitErr(s.writeMaster(o.groupDir, o.folder, bw, func(m *masterState) []byte {
				return hdsV1Manifest(m, o.base, o.manifest)
			}, v1), "write hds v1 manifest")
			s.logEmitErr(s.writeMaster(o.groupDir, o.folder, bw, func(m *masterState) []byte {
				return hdsMasterManifest(m, o.manifest)
			}, master), "write hds master manifest")
			s.em.emit("hdsMasterPlaylistUpdated", obj{"file": master})
		}
	}
	if o.rolling {
		for len(o.moved) > o.window+o.staleKeep {
			f := o.moved[0]
			o.moved = o.moved[1:]
			if err := os.Remove(f); err == nil {
				s.em.emit("hdsChunkDeleted", obj{"file": f})
			}
		}
	}
}

var (
	reMediaURL     = regexp.MustCompile(`url="stream0"`)
	reBootstrapURL = regexp.MustCompile(`url="stream0\.abst"`)
)

// childManifest is ffmpeg's index.f4m pointed at EMS's fragment and bootstrap names.
func (o *hdsOut) childManifest(idx []byte) []byte {
	if len(idx) == 0 {
		return []byte(fmt.Sprintf("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<manifest xmlns=\"http://ns.adobe.com/f4m/1.0\">\n\t<id>%s</id>\n\t<streamType>live</streamType>\n\t<deliveryType>streaming</deliveryType>\n\t<bootstrapInfo profile=\"named\" url=\"bootstrap\" id=\"bootstrap0\" />\n\t<media url=\"%s\" bootstrapInfoId=\"bootstrap0\" />\n</manifest>\n", o.manifest, o.base))
	}
	out := reMediaURL.ReplaceAll(idx, []byte(`url="`+o.base+`"`))
	out = reBootstrapURL.ReplaceAll(out, []byte(`url="bootstrap"`))
	return bytes.Replace(out, []byte("<streamType>recorded</streamType>"), []byte("<streamType>live</streamType>"), 1)
}

// hdsMasterManifest is the group's set-level manifest (F4M 2.0), one entry per stream.
func hdsMasterManifest(m *masterState, manifest string) []byte {
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<manifest xmlns=\"http://ns.adobe.com/f4m/2.0\">\n")
	for _, k := range sortedKeys(m.streams) {
		fmt.Fprintf(&b, "\t<media href=\"%s/%s.f4m\" bitrate=\"%d\" />\n", k, manifest, max(m.streams[k]/1000, 0))
	}
	b.WriteString("</manifest>\n")
	return []byte(b.String())
}

// hdsV1Manifest is the group's F4M 1.0 manifest: media and bootstrap entries per stream.
func hdsV1Manifest(m *masterState, base, manifest string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<manifest xmlns=\"http://ns.adobe.com/f4m/1.0\">\n\t<id>%s</id>\n\t<streamType>live</streamType>\n\t<deliveryType>streaming</deliveryType>\n", manifest)
	for i, k := range sortedKeys(m.streams) {
		fmt.Fprintf(&b, "\t<bootstrapInfo profile=\"named\" url=\"%s/bootstrap\" id=\"bootstrap%d\" />\n", k, i)
		fmt.Fprintf(&b, "\t<media url=\"%s/%s\" bitrate=\"%d\" bootstrapInfoId=\"bootstrap%d\" />\n", k, base, max(m.streams[k]/1000, 0), i)
	}
	b.WriteString("</manifest>\n")
	return []byte(b.String())
}

func (o *hdsOut) finish(removeFiles bool) {
	if removeFiles {
		_ = os.RemoveAll(o.dir)
	}
}

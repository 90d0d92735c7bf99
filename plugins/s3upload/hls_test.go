package s3upload

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/s3test"
)

// hlsSource makes n one-second HLS segments with ffmpeg and returns the staging folder and the
// playlist's segment entries (EXTINF line + name).
func hlsSource(t *testing.T, n int) (string, [][2]string) {
	t.Helper()
	stage := t.TempDir()
	ffmpeg(t, stage, "-t", itoa(n), "-f", "hls", "-hls_time", "1", "-hls_list_size", "0",
		"-hls_segment_filename", "segment_1506606234534_%d.ts", "playlist.m3u8")
	var entries [][2]string
	lines := strings.Split(string(readFile(t, filepath.Join(stage, "playlist.m3u8"))), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "#EXTINF") && i+1 < len(lines) {
			entries = append(entries, [2]string{l, lines[i+1]})
		}
	}
	if len(entries) < n-1 {
		t.Fatalf("ffmpeg made %d segments, want about %d", len(entries), n)
	}
	return stage, entries
}

func childPlaylist(entries [][2]string, end bool) []byte {
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n")
	for _, e := range entries {
		b.WriteString(e[0] + "\n" + e[1] + "\n")
	}
	if end {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	return []byte(b.String())
}

const masterM3U8 = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-STREAM-INF:BANDWIDTH=200000,RESOLUTION=160x120\ncam1/playlist.m3u8\n"

// TestHLSPlaylistNeverAheadOfSegments plays EMS's worst order for a live stream: each child
// playlist event arrives before the chunk event of the segment it adds (EMS logs them in that
// order, reference §1.6.2), the master first of all, and chunk events repeat. After every event
// the bucket must not hold a playlist naming a missing segment, no segment may be stored twice,
// and the bucket must play in ffprobe over HTTP with every segment.
func TestHLSPlaylistNeverAheadOfSegments(t *testing.T) {
	stage, entries := hlsSource(t, 6)
	srv := s3test.StartWith(t, s3test.Options{Versioning: true})
	e := newEnv(t, KindHLS, srv, map[string]any{"acl": "public-read"})
	srv.EnableVersioning(t, e.bucket)
	group := filepath.Join(e.root, "hlsa1")
	stream := filepath.Join(group, "cam1")
	master := filepath.Join(group, "playlist.m3u8")
	child := filepath.Join(stream, "playlist.m3u8")

	for i, ent := range entries {
		seg := filepath.Join(stream, ent[1])
		writeFile(t, seg, readFile(t, filepath.Join(stage, ent[1])))
		writeFile(t, child, childPlaylist(entries[:i+1], i == len(entries)-1))
		if i == 0 {
			writeFile(t, master, []byte(masterM3U8))
			e.handle(e.fileEvent(event.HLSMasterPlaylistUpdated, master))
			e.assertComplete()
		}
		e.handle(e.fileEvent(event.HLSChildPlaylistUpdated, child))
		e.assertComplete()
		e.handle(e.fileEvent(event.HLSChunkClosed, seg))
		e.assertComplete()
		if i > 0 { // a repeated delivery of the previous chunk event
			e.handle(e.fileEvent(event.HLSChunkClosed, filepath.Join(stream, entries[i-1][1])))
		}
	}
	e.handle(e.fileEvent(event.HLSChildPlaylistUpdated, child)) // repeated, unchanged

	objs := e.objects()
	for _, ent := range entries {
		key := "hlsa1/cam1/" + ent[1]
		if objs[key] == 0 {
			t.Errorf("bucket lacks %s", key)
		}
	}
	for _, key := range []string{"hlsa1/playlist.m3u8", "hlsa1/cam1/playlist.m3u8"} {
		if _, ok := objs[key]; !ok {
			t.Errorf("bucket lacks %s", key)
		}
	}
	if got := string(e.get("hlsa1/cam1/playlist.m3u8")); got != string(readFile(t, child)) {
		t.Errorf("stored child playlist is not the final one:\n%s", got)
	}
	for key, n := range e.puts() {
		if strings.HasSuffix(key, ".ts") && n != 1 {
			t.Errorf("%s stored %d times, want once", key, n)
		}
	}
	if got, want := counter(e.u.m.objects.WithLabelValues("segment")), float64(len(entries)); got != want {
		t.Errorf("segment objects counter = %v, want %v", got, want)
	}
	if counter(e.u.m.unchanged) == 0 {
		t.Error("unchanged counter is 0 after repeated events")
	}
	e.assertVersionOrder()
	if histCount(e.u.m.eventToObject) == 0 {
		t.Error("no event-to-object latency observed")
	}

	// Play from the bucket: the objects are public-read, ffprobe fetches the master over HTTP and
	// must read as many packets as from the local files.
	e.srv.MakePublic(t, e.bucket)
	local := probePackets(t, master)
	remote := probePackets(t, e.srv.URL(e.bucket, "hlsa1/playlist.m3u8"))
	if remote != local || local == 0 {
		t.Errorf("ffprobe over HTTP read %d packets, from disk %d", remote, local)
	}
	gets := map[string]bool{}
	reqs, _ := e.srv.Requests()
	for _, r := range reqs {
		if r.Operation == "s3_GetObject" && r.Status == 200 && r.Key != "-" {
			gets[r.Key] = true
		}
	}
	for _, ent := range entries {
		if !gets["hlsa1/cam1/"+ent[1]] {
			t.Errorf("player never fetched %s", ent[1])
		}
	}
}

// TestHLSKeysFromWindowsPaths feeds paths with EMS's mixed separators (reference §1.3) and checks
// the keys, under a prefix.
func TestHLSKeysFromWindowsPaths(t *testing.T) {
	stage, entries := hlsSource(t, 2)
	e := newEnv(t, KindHLS, nil, map[string]any{"prefix": `live\eu`})
	seg := filepath.Join(e.root, "hlsa1", "1", entries[0][1])
	writeFile(t, seg, readFile(t, filepath.Join(stage, entries[0][1])))
	// EMS on Windows: "F:/EVOSTREAMMS/evo-webroot\\hlsa1\\1\\segment.ts"; here rooted in the temp dir.
	mixed := e.root + `\hlsa1\\1\` + entries[0][1]
	e.handle(e.fileEvent(event.HLSChunkClosed, mixed))
	want := "live/eu/hlsa1/1/" + entries[0][1]
	if _, ok := e.objects()[want]; !ok {
		t.Fatalf("bucket has %v, want key %s", sortedKeys(e.objects()), want)
	}
}

// TestHLSChunkDeleted deletes the object only when configured.
func TestHLSChunkDeleted(t *testing.T) {
	stage, entries := hlsSource(t, 2)
	for _, del := range []bool{false, true} {
		t.Run(map[bool]string{false: "kept", true: "deleted"}[del], func(t *testing.T) {
			e := newEnv(t, KindHLS, nil, map[string]any{"delete_on_chunk_deleted": del})
			seg := filepath.Join(e.root, "g", "s", entries[0][1])
			writeFile(t, seg, readFile(t, filepath.Join(stage, entries[0][1])))
			e.handle(e.fileEvent(event.HLSChunkClosed, seg))
			if err := os.Remove(seg); err != nil {
				t.Fatal(err)
			}
			e.handle(e.fileEvent(event.HLSChunkDeleted, seg))
			e.handle(e.fileEvent(event.HLSChunkDeleted, seg)) // repeated: harmless
			_, present := e.objects()["g/s/"+entries[0][1]]
			if present == del {
				t.Errorf("delete_on_chunk_deleted=%v: object present = %v", del, present)
			}
		})
	}
}

package s3upload

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/plugins"
)

// TestGuideConfigLoads: the web-services guide's parameters load as printed (the trailing commas
// are the config loader's business; here the parameters object it hands over).
func TestGuideConfigLoads(t *testing.T) {
	tests := []struct {
		kind   Kind
		params string
		bucket string
	}{
		{KindHLS, `{"aws_access_key": "1234567890", "aws_secret_key": "ABCDEFGHIJ1234567890", "default_bucket": "HLS_files"}`, "HLS_files"},
		{KindHDS, `{"aws_access_key": "...", "aws_secret_key": "...", "default_bucket": "HDS_files", "bootstrap": "bootstrap"}`, "HDS_files"},
		{KindDASH, `{"aws_access_key": "...", "aws_secret_key": "...", "default_bucket": "DASH_files"}`, "DASH_files"},
		{KindRecord, `{"default_bucket": "records", "media_roots": "/var/evostreamms/media"}`, "records"},
	}
	for _, tc := range tests {
		t.Run(string(tc.kind), func(t *testing.T) {
			p, err := Factory(tc.kind)("x", json.RawMessage(tc.params), plugins.Deps{})
			if err != nil {
				t.Fatalf("factory: %v", err)
			}
			u := p.(*Uploader)
			if u.cfg.DefaultBucket != tc.bucket || u.cfg.ACL != "private" || u.cfg.Bootstrap != "bootstrap" || len(u.cfg.MediaRoots) == 0 {
				t.Errorf("config = %+v", u.cfg)
			}
			if len(u.Events()) == 0 {
				t.Error("no events")
			}
			for _, ev := range u.Events() {
				if !event.IsKnown(ev) {
					t.Errorf("event %s is not a known EMS event", ev)
				}
			}
		})
	}
}

// TestValidateListsEveryProblem: all problems come back at once.
func TestValidateListsEveryProblem(t *testing.T) {
	_, err := ParseConfig(json.RawMessage(`{"aws_access_key": "AKIAEXAMPLE", "endpoint": "ftp://x", "acl": "world", "storage_class": "COLD", "concurrency": 100, "part_size": 1024, "bootstrap": "a/b", "media_roots": [" "]}`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"default_bucket", "aws_secret_key", "endpoint", "acl", "storage_class", "concurrency", "part_size", "bootstrap", "media_roots"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
	_, err = ParseConfig(json.RawMessage(`{"default_bucket": "b", "bucket_typo": 1}`))
	if err == nil || !strings.Contains(err.Error(), "bucket_typo") {
		t.Errorf("unknown key: got %v", err)
	}
}

// TestSecretsRedacted: neither fmt nor JSON shows the keys.
func TestSecretsRedacted(t *testing.T) {
	cfg, err := ParseConfig(json.RawMessage(`{"aws_access_key": "AKIASECRETACCESS", "aws_secret_key": "verysecretkeyvalue", "default_bucket": "b"}`))
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(cfg)
	for _, s := range []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), string(j)} {
		if strings.Contains(s, "AKIASECRETACCESS") || strings.Contains(s, "verysecretkeyvalue") {
			t.Errorf("secret printed: %s", s)
		}
		if !strings.Contains(s, "redacted") {
			t.Errorf("no <redacted> in %s", s)
		}
	}
}

// TestKeys derives keys from the reference's wire paths (§1.3, §1.6.1, §1.6.2), with the
// original's component counts (§4.4).
func TestKeys(t *testing.T) {
	tests := []struct {
		name, prefix, file string
		tail               int
		want               string
	}{
		{"hls chunk, windows", "", `F:/EVOSTREAMMS/evostreamms17/evo-webroot\hlsa1\1\segment_1506606234534_17.ts`, tailSegment, "hlsa1/1/segment_1506606234534_17.ts"},
		{"hls master, windows", "", `F:/EVOSTREAMMS/evostreamms17/evo-webroot\hlsa1\playlist.m3u8`, tailMaster, "hlsa1/playlist.m3u8"},
		{"hls chunk, linux", "", "/var/evo-webroot/cam1/cam1/segment_1506606234534_17.ts", tailSegment, "cam1/cam1/segment_1506606234534_17.ts"},
		{"dash init, mixed", "", `F:/EVOSTREAMMS/evo-webroot\dashc1\1\/video/0/seg_init.mp4`, tailDASH, "dashc1/1/video/0/seg_init.mp4"},
		{"dash chunk, docs", "", "/evo-webroot/dash/stream1/video/229376/1416464032000.fmp4", tailDASH, "dash/stream1/video/229376/1416464032000.fmp4"},
		{"dash manifest", "", "/evo-webroot/dashc1/manifest.mpd", tailMaster, "dashc1/manifest.mpd"},
		{"hds fragment", "", "/evo-webroot/hds/stream1/f4vSeg1-Frag7", tailSegment, "hds/stream1/f4vSeg1-Frag7"},
		{"prefix", "live/", `C:\web\g\s\x.ts`, tailSegment, "live/g/s/x.ts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tailKey(tc.prefix, tc.file, tc.tail); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	for _, tc := range []struct{ in, want string }{{"live", "live/"}, {`\live\eu\`, "live/eu/"}, {"", ""}} {
		cfg, err := ParseConfig(json.RawMessage(fmt.Sprintf(`{"default_bucket": "b", "prefix": %q}`, tc.in)))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Prefix != tc.want {
			t.Errorf("prefix %q normalised to %q, want %q", tc.in, cfg.Prefix, tc.want)
		}
	}
}

func TestContentTypes(t *testing.T) {
	tests := map[string]string{
		"a/playlist.m3u8": "application/vnd.apple.mpegurl", "a/s.ts": "video/mp2t", "a/s.aac": "audio/aac",
		"a/r.mp4": "video/mp4", "a/s.m4s": "video/iso.segment", "a/1.fmp4": "video/mp4", "a/m.mpd": "application/dash+xml",
		"a/m.f4m": "application/f4m+xml", "a/f4vSeg1-Frag3": "video/f4f", "a/bootstrap": "application/octet-stream",
	}
	for name, want := range tests {
		if got := classify(name, "bootstrap").contentType(); got != want {
			t.Errorf("%s: got %s, want %s", name, got, want)
		}
	}
	if !classify("a/bootstrap", "bootstrap").isPlaylist() || classify("a/s.ts", "bootstrap").isPlaylist() {
		t.Error("bootstrap must be ordered like a playlist, segments not")
	}
}

func TestM3U8Refs(t *testing.T) {
	pl := `#EXTM3U
#EXT-X-KEY:METHOD=AES-128,URI="key1.key"
#EXT-X-MAP:URI="init.mp4"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",URI="audio/playlist.m3u8"
#EXTINF:10,
seg1.ts?token=1
#EXTINF:10,
http://cdn.example/seg2.ts
#EXTINF:10,
/abs/seg3.ts

seg1.ts
`
	got := m3u8Refs([]byte(pl))
	want := []string{"key1.key", "init.mp4", "audio/playlist.m3u8", "seg1.ts"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestMPDRefs(t *testing.T) {
	mpd := `<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic">
 <Period>
  <AdaptationSet>
   <SegmentTemplate initialization="$RepresentationID$/init.mp4" media="$RepresentationID$/$Number%05d$.m4s" startNumber="7">
    <SegmentTimeline><S t="100" d="10" r="1"/><S d="5"/></SegmentTimeline>
   </SegmentTemplate>
   <Representation id="v0" bandwidth="1000"/>
  </AdaptationSet>
  <AdaptationSet>
   <BaseURL>audio/</BaseURL>
   <Representation id="a0">
    <SegmentTemplate initialization="init.mp4" media="t$Time$.m4s"><SegmentTimeline><S t="0" d="3" r="2"/></SegmentTimeline></SegmentTemplate>
   </Representation>
  </AdaptationSet>
  <AdaptationSet><Representation id="x"><SegmentTemplate media="x_$Number$.m4s" duration="2"/></Representation></AdaptationSet>
 </Period>
</MPD>`
	refs, pats, err := mpdRefs([]byte(mpd))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"v0/init.mp4", "v0/00007.m4s", "v0/00008.m4s", "v0/00009.m4s",
		"audio/init.mp4", "audio/t0.m4s", "audio/t3.m4s", "audio/t6.m4s"}
	if !slices.Equal(refs, want) {
		t.Errorf("refs:\ngot  %v\nwant %v", refs, want)
	}
	if len(pats) != 1 || !pats[0].re.MatchString("x_12.m4s") || pats[0].re.MatchString("y_12.m4s") {
		t.Errorf("patterns: %+v", pats)
	}
}

// TestMPDRefsRepeatToNext: r="-1" repeats a segment until the next S's start, or, on the last
// S, to the period's end, which a live manifest does not state: then every file the template
// matches counts as referenced, so the manifest never reaches the bucket before a segment it
// lists. A template's folder is looked up with the representation filled in.
func TestMPDRefsRepeatToNext(t *testing.T) {
	mpd := `<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic">
 <Period>
  <AdaptationSet>
   <SegmentTemplate media="$RepresentationID$/$Time$.m4s">
    <SegmentTimeline><S t="0" d="10" r="-1"/><S t="40" d="5" r="-1"/></SegmentTimeline>
   </SegmentTemplate>
   <Representation id="v0"/>
  </AdaptationSet>
  <AdaptationSet>
   <SegmentTemplate media="a_$Number$.m4s" startNumber="3">
    <SegmentTimeline><S t="0" d="4" r="-1"/><S t="10" d="4"/></SegmentTimeline>
   </SegmentTemplate>
   <Representation id="a0"/>
  </AdaptationSet>
  <AdaptationSet>
   <SegmentTemplate media="$RepresentationID$/s_$Number$.m4s" duration="2"/>
   <Representation id="x0"/>
  </AdaptationSet>
 </Period>
</MPD>`
	refs, pats, err := mpdRefs([]byte(mpd))
	if err != nil {
		t.Fatal(err)
	}
	// v0: 0, 10, 20, 30 up to the next S at 40, then 40 itself; a0: 0, 4, 8 (the next S starts
	// at 10, inside the third), then the S at 10.
	want := []string{"v0/0.m4s", "v0/10.m4s", "v0/20.m4s", "v0/30.m4s", "v0/40.m4s", "a_3.m4s", "a_4.m4s", "a_5.m4s", "a_6.m4s"}
	if !slices.Equal(refs, want) {
		t.Errorf("refs:\ngot  %v\nwant %v", refs, want)
	}
	// v0's last S repeats to the period's end; x0 has no timeline. Both folders are the
	// representation's, not a literal "$RepresentationID$".
	if len(pats) != 2 || pats[0].dir != "v0" || !pats[0].re.MatchString("45.m4s") || pats[0].re.MatchString("a_7.m4s") ||
		pats[1].dir != "x0" || !pats[1].re.MatchString("s_12.m4s") {
		t.Errorf("patterns = %+v, want v0's template and x0's, in their own folders", pats)
	}
}

func TestLocalRef(t *testing.T) {
	for in, want := range map[string]string{"a.ts": "a.ts", "a.ts?x=1": "a.ts", "https://h/a.ts": "", "/a.ts": "", "data:abc": "", " b/c.ts ": "b/c.ts"} {
		if got := localRef(in); got != want {
			t.Errorf("localRef(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOrderKey(t *testing.T) {
	e := &testEnv{t: t}
	hls := &Uploader{kind: KindHLS}
	dash := &Uploader{kind: KindDASH}
	if a, b := hls.OrderKey(e.fileEvent(event.HLSChunkClosed, `/w\g\s\1.ts`)), hls.OrderKey(e.fileEvent(event.HLSChildPlaylistUpdated, "/w/g/s/playlist.m3u8")); a != b || a != "/w/g/s" {
		t.Errorf("hls chunk and child playlist keys: %q, %q; want both /w/g/s", a, b)
	}
	if a, b := dash.OrderKey(e.fileEvent(event.DASHChunkClosed, "/w/g/s/video/0/1.fmp4")), dash.OrderKey(e.fileEvent(event.DASHPlaylistUpdated, "/w/g/manifest.mpd")); a != b || a != "/w/g" {
		t.Errorf("dash chunk and manifest keys: %q, %q; want both /w/g", a, b)
	}
}

package s3upload

import (
	"path"
	"regexp"
	"strings"

	"github.com/emsflow/emsflow/event"
)

// fileKind is what a file is to a player: it decides Content-Type, Cache-Control and whether the
// file references others that must be in the bucket first.
type fileKind int

const (
	kindOther fileKind = iota
	kindM3U8
	kindMPD
	kindF4M
	kindBootstrap
	kindTS
	kindAAC
	kindMP4
	kindM4S
	kindFMP4
	kindF4F
	kindFLV
)

var hdsFragment = regexp.MustCompile(`Seg(\d+)-Frag(\d+)$`)

// classify tells a file's kind from its name. bootstrap is the configured HDS bootstrap name.
func classify(name, bootstrap string) fileKind {
	base := path.Base(event.NormalizePath(name))
	switch strings.ToLower(path.Ext(base)) {
	case ".m3u8":
		return kindM3U8
	case ".mpd":
		return kindMPD
	case ".f4m":
		return kindF4M
	case ".abst", ".bootstrap":
		return kindBootstrap
	case ".ts":
		return kindTS
	case ".aac":
		return kindAAC
	case ".mp4":
		return kindMP4
	case ".m4s":
		return kindM4S
	case ".fmp4":
		return kindFMP4
	case ".f4f":
		return kindF4F
	case ".flv":
		return kindFLV
	}
	if base == bootstrap {
		return kindBootstrap
	}
	if hdsFragment.MatchString(base) {
		return kindF4F
	}
	return kindOther
}

// isPlaylist reports whether a kind changes over time and names other files: playlists,
// manifests and the HDS bootstrap (its fragment table grows as the stream goes on).
func (k fileKind) isPlaylist() bool {
	return k == kindM3U8 || k == kindMPD || k == kindF4M || k == kindBootstrap
}

// contentType is the Content-Type an HTTP player expects for a kind.
func (k fileKind) contentType() string {
	switch k {
	case kindM3U8:
		return "application/vnd.apple.mpegurl"
	case kindMPD:
		return "application/dash+xml"
	case kindF4M:
		return "application/f4m+xml"
	case kindTS:
		return "video/mp2t"
	case kindAAC:
		return "audio/aac"
	case kindMP4, kindFMP4:
		return "video/mp4"
	case kindM4S:
		return "video/iso.segment"
	case kindF4F:
		return "video/f4f"
	case kindFLV:
		return "video/x-flv"
	}
	return "application/octet-stream"
}

// Key derivation follows the original web services (reference §4.4): the trailing components of
// the EMS path, split on both separators.
const (
	tailSegment = 3 // group/stream/file: chunks, child playlists, HDS bootstrap
	tailMaster  = 2 // group/file: master playlists, HDS master manifests, DASH manifests
	tailDASH    = 5 // group/stream/{video,audio}/<n>/file: DASH chunks and the init segment
)

// tailKey is the object key of an EMS file path: the last n components under the prefix.
func tailKey(prefix, file string, n int) string {
	return prefix + event.PathTail(file, n)
}

// refKey is the key of a file a playlist references by a relative URL: relative to the
// playlist's own key, so that the reference resolves in the bucket as it does on disk.
func refKey(playlistKey, ref string) string {
	return path.Join(path.Dir(playlistKey), ref)
}

// refPath is the EMS path of a file a playlist references by a relative URL.
func refPath(playlistFile, ref string) string {
	return path.Join(path.Dir(event.NormalizePath(playlistFile)), ref)
}

// localRef turns a URL found in a playlist into a relative reference, or "" when it points
// elsewhere (another host, a root-relative path, a data: URI): such references are not ours to
// upload.
func localRef(u string) string {
	u = strings.TrimSpace(u)
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	if u == "" || strings.HasPrefix(u, "/") || strings.Contains(u, "://") || strings.HasPrefix(strings.ToLower(u), "data:") {
		return ""
	}
	return u
}

// ReferencedKeys returns the object keys a stored HLS playlist (.m3u8), DASH manifest (.mpd) or
// HDS manifest (.f4m) object references, resolved against its own key as a player resolves
// them. Tests and tools use it to check a bucket: every key returned must be in the bucket. HDS
// bootstraps are not covered (their fragment names depend on the manifest's media url).
func ReferencedKeys(key string, data []byte) ([]string, error) {
	var rels []string
	switch classify(key, "") {
	case kindM3U8:
		rels = m3u8Refs(data)
	case kindMPD:
		refs, _, err := mpdRefs(data)
		if err != nil {
			return nil, err
		}
		rels = refs
	case kindF4M:
		media, err := f4mRefs(data)
		if err != nil {
			return nil, err
		}
		for _, m := range media {
			if m.href != "" {
				rels = append(rels, m.href)
			}
			if m.bootstrap != "" {
				rels = append(rels, m.bootstrap)
			}
		}
	}
	out := make([]string, len(rels))
	for i, r := range rels {
		out[i] = refKey(key, r)
	}
	return out, nil
}

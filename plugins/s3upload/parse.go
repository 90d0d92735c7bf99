package s3upload

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// m3u8Refs returns the relative URIs an HLS playlist references: segment and variant lines, and
// the URI attributes of tags (EXT-X-MAP, EXT-X-MEDIA, EXT-X-KEY, EXT-X-I-FRAME-STREAM-INF).
func m3u8Refs(data []byte) []string {
	var out []string
	seen := map[string]bool{}
	add := func(u string) {
		if r := localRef(u); r != "" && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, "#"):
			for _, m := range uriAttr.FindAllStringSubmatch(line, -1) {
				add(m[1])
			}
		default:
			add(line)
		}
	}
	return out
}

var uriAttr = regexp.MustCompile(`URI="([^"]*)"`)

// isMasterM3U8 reports whether an HLS playlist is a master (variant) playlist.
func isMasterM3U8(data []byte) bool { return bytes.Contains(data, []byte("#EXT-X-STREAM-INF")) }

// mpdDoc is the part of a DASH manifest that names files.
type mpdDoc struct {
	BaseURL []string    `xml:"BaseURL"`
	Periods []mpdPeriod `xml:"Period"`
}

type mpdPeriod struct {
	BaseURL         []string        `xml:"BaseURL"`
	SegmentTemplate *mpdTemplate    `xml:"SegmentTemplate"`
	AdaptationSets  []mpdAdaptation `xml:"AdaptationSet"`
}

type mpdAdaptation struct {
	BaseURL         []string            `xml:"BaseURL"`
	SegmentTemplate *mpdTemplate        `xml:"SegmentTemplate"`
	SegmentList     *mpdSegmentList     `xml:"SegmentList"`
	Representations []mpdRepresentation `xml:"Representation"`
}

type mpdRepresentation struct {
	ID              string          `xml:"id,attr"`
	Bandwidth       string          `xml:"bandwidth,attr"`
	BaseURL         []string        `xml:"BaseURL"`
	SegmentTemplate *mpdTemplate    `xml:"SegmentTemplate"`
	SegmentList     *mpdSegmentList `xml:"SegmentList"`
}

type mpdTemplate struct {
	Media          string       `xml:"media,attr"`
	Initialization string       `xml:"initialization,attr"`
	StartNumber    *uint64      `xml:"startNumber,attr"`
	Timeline       *mpdTimeline `xml:"SegmentTimeline"`
}

type mpdTimeline struct {
	S []struct {
		T *uint64 `xml:"t,attr"`
		D uint64  `xml:"d,attr"`
		R int64   `xml:"r,attr"`
	} `xml:"S"`
}

type mpdSegmentList struct {
	Initialization *struct {
		SourceURL string `xml:"sourceURL,attr"`
	} `xml:"Initialization"`
	URLs []struct {
		Media string `xml:"media,attr"`
	} `xml:"SegmentURL"`
}

// mpdPattern is a media template whose segments cannot be listed from the manifest alone (no
// SegmentTimeline, or one whose last entry repeats to the period's end): the files in dir whose
// names match re are taken as referenced.
type mpdPattern struct {
	dir string
	re  *regexp.Regexp
}

// mpdRefs returns the relative files a DASH manifest references: initialization and media
// segments, expanded from SegmentTemplate with SegmentTimeline, or SegmentList, or BaseURL
// (SegmentBase). Templates without a timeline come back as patterns.
func mpdRefs(data []byte) ([]string, []mpdPattern, error) {
	var doc mpdDoc
	if err := xml.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("parse mpd: %w", err)
	}
	var refs []string
	var pats []mpdPattern
	seen := map[string]bool{}
	add := func(base, u string) {
		r := localRef(u)
		if r == "" {
			return
		}
		r = path.Join(base, r)
		if !seen[r] {
			seen[r] = true
			refs = append(refs, r)
		}
	}
	join := func(base string, urls []string) (string, bool) {
		if len(urls) == 0 {
			return base, true
		}
		r := localRef(urls[0])
		if r == "" {
			return "", false // an absolute BaseURL: the files live elsewhere
		}
		if strings.HasSuffix(urls[0], "/") {
			return path.Join(base, r), true
		}
		return path.Join(base, path.Dir(r)), true
	}
	docBase, ok := join("", doc.BaseURL)
	if !ok {
		return nil, nil, nil
	}
	for _, p := range doc.Periods {
		pBase, ok := join(docBase, p.BaseURL)
		if !ok {
			continue
		}
		for _, as := range p.AdaptationSets {
			asBase, ok := join(pBase, as.BaseURL)
			if !ok {
				continue
			}
			reps := as.Representations
			if len(reps) == 0 {
				reps = []mpdRepresentation{{}}
			}
			for _, rep := range reps {
				rBase, ok := join(asBase, rep.BaseURL)
				if !ok {
					continue
				}
				tpl := mergeTemplate(rep.SegmentTemplate, as.SegmentTemplate, p.SegmentTemplate)
				list := rep.SegmentList
				if list == nil {
					list = as.SegmentList
				}
				switch {
				case tpl != nil:
					if tpl.Initialization != "" {
						add(rBase, expandTemplate(tpl.Initialization, rep, 0, 0))
					}
					if tpl.Media == "" {
						break
					}
					if tpl.Timeline == nil {
						if p, ok := templatePattern(rBase, tpl.Media, rep); ok {
							pats = append(pats, p)
						}
						break
					}
					num := uint64(1)
					if tpl.StartNumber != nil {
						num = *tpl.StartNumber
					}
					var t uint64
					timeline := tpl.Timeline.S
					for i, s := range timeline {
						if s.T != nil {
							t = *s.T
						}
						repeat := max(s.R, 0)
						if s.R < 0 {
							// r=-1 repeats until the next S's start, or to the period's end.
							if i+1 < len(timeline) && timeline[i+1].T != nil && s.D > 0 && *timeline[i+1].T > t {
								repeat = int64((*timeline[i+1].T-t+s.D-1)/s.D) - 1
							} else if p, ok := templatePattern(rBase, tpl.Media, rep); ok {
								// The period's end is not in the file (a live manifest grows to
								// "now"): every file the template matches counts, which errs on
								// the side of uploading before the manifest.
								pats = append(pats, p)
							}
						}
						for range repeat + 1 {
							add(rBase, expandTemplate(tpl.Media, rep, num, t))
							num++
							t += s.D
						}
					}
				case list != nil:
					if list.Initialization != nil {
						add(rBase, list.Initialization.SourceURL)
					}
					for _, u := range list.URLs {
						add(rBase, u.Media)
					}
				case len(rep.BaseURL) > 0:
					add(asBase, rep.BaseURL[0])
				}
			}
		}
	}
	return refs, pats, nil
}

func mergeTemplate(ts ...*mpdTemplate) *mpdTemplate {
	var out *mpdTemplate
	for _, t := range ts {
		if t == nil {
			continue
		}
		if out == nil {
			c := *t
			out = &c
			continue
		}
		if out.Media == "" {
			out.Media = t.Media
		}
		if out.Initialization == "" {
			out.Initialization = t.Initialization
		}
		if out.StartNumber == nil {
			out.StartNumber = t.StartNumber
		}
		if out.Timeline == nil {
			out.Timeline = t.Timeline
		}
	}
	return out
}

var templateVar = regexp.MustCompile(`\$(RepresentationID|Number|Time|Bandwidth|SubNumber)(%0(\d+)d)?\$|\$\$`)

// expandTemplate fills a SegmentTemplate string (ISO/IEC 23009-1 5.3.9.4.4).
func expandTemplate(tpl string, rep mpdRepresentation, number, t uint64) string {
	return templateVar.ReplaceAllStringFunc(tpl, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := templateVar.FindStringSubmatch(m)
		var v string
		switch sub[1] {
		case "RepresentationID":
			return rep.ID
		case "Bandwidth":
			v = rep.Bandwidth
		case "Number":
			v = strconv.FormatUint(number, 10)
		case "Time":
			v = strconv.FormatUint(t, 10)
		default:
			v = "0"
		}
		if sub[3] != "" {
			if w, err := strconv.Atoi(sub[3]); err == nil && len(v) < w {
				v = strings.Repeat("0", w-len(v)) + v
			}
		}
		return v
	})
}

// templatePattern is the pattern of a media template's files: its folder under base, with the
// representation's id and bandwidth filled in ($RepresentationID$/ is a common folder), and a
// regexp for the file names.
func templatePattern(base, media string, rep mpdRepresentation) (mpdPattern, bool) {
	re := templateRegexp(media, rep)
	if re == nil {
		return mpdPattern{}, false
	}
	return mpdPattern{dir: path.Join(base, path.Dir(expandTemplate(media, rep, 0, 0))), re: re}, true
}

// templateRegexp matches the file names a media template can produce.
func templateRegexp(tpl string, rep mpdRepresentation) *regexp.Regexp {
	base := path.Base(tpl)
	var b strings.Builder
	b.WriteString("^")
	last := 0
	for _, loc := range templateVar.FindAllStringSubmatchIndex(base, -1) {
		b.WriteString(regexp.QuoteMeta(base[last:loc[0]]))
		m := base[loc[0]:loc[1]]
		switch {
		case m == "$$":
			b.WriteString(`\$`)
		case loc[2] >= 0 && base[loc[2]:loc[3]] == "RepresentationID":
			b.WriteString(regexp.QuoteMeta(rep.ID))
		default:
			b.WriteString(`\d+`)
		}
		last = loc[1]
	}
	b.WriteString(regexp.QuoteMeta(base[last:]))
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil
	}
	return re
}

// f4mDoc is the part of an HDS manifest that names files.
type f4mDoc struct {
	Bootstraps []struct {
		ID     string `xml:"id,attr"`
		URL    string `xml:"url,attr"`
		Inline string `xml:",chardata"`
	} `xml:"bootstrapInfo"`
	Media []struct {
		URL         string `xml:"url,attr"`
		Href        string `xml:"href,attr"`
		BootstrapID string `xml:"bootstrapInfoId,attr"`
	} `xml:"media"`
}

// f4mMedia is one media entry of an HDS manifest: either a child manifest (href, multi-level
// manifests) or fragments named <url>Seg<s>-Frag<f> listed by a bootstrap (a file or inline).
type f4mMedia struct {
	href      string
	url       string
	bootstrap string // relative file of the bootstrap; "" when inline or absent
	inline    []byte // inline bootstrap box
}

// f4mRefs parses an HDS manifest.
func f4mRefs(data []byte) ([]f4mMedia, error) {
	var doc f4mDoc
	if err := xml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse f4m: %w", err)
	}
	var out []f4mMedia
	for _, m := range doc.Media {
		if h := localRef(m.Href); h != "" {
			out = append(out, f4mMedia{href: h})
			continue
		}
		fm := f4mMedia{url: localRef(m.URL)}
		if fm.url == "" && m.URL != "" {
			continue
		}
		for _, b := range doc.Bootstraps {
			if m.BootstrapID != "" && b.ID != m.BootstrapID && len(doc.Bootstraps) > 1 {
				continue
			}
			if b.URL != "" {
				fm.bootstrap = localRef(b.URL)
			} else if s := strings.Join(strings.Fields(b.Inline), ""); s != "" {
				raw, err := base64.StdEncoding.DecodeString(s)
				if err != nil {
					return nil, fmt.Errorf("parse f4m: inline bootstrap: %w", err)
				}
				fm.inline = raw
			}
			break
		}
		out = append(out, fm)
	}
	return out, nil
}

// fragRun is a run of HDS fragments listed by a bootstrap: fragments first..last of segment seg.
// open marks the last run of the table, whose length the table does not say: it extends while the
// next fragment exists on disk.
type fragRun struct {
	seg, first, last uint32
	open             bool
}

// abstRuns reads an HDS bootstrap box (F4V "abst", Adobe HTTP Dynamic Streaming spec 2.11.2) and
// returns the fragments its fragment run table lists.
func abstRuns(data []byte) ([]fragRun, error) {
	body, typ, err := box(data)
	if err != nil {
		return nil, err
	}
	if typ != "abst" {
		return nil, fmt.Errorf("parse bootstrap: box %q, want abst", typ)
	}
	r := &reader{b: body}
	r.skip(4 + 4 + 1 + 4 + 8 + 8) // version/flags, bootstrap version, profile/live/update, timescale, current time, smpte offset
	r.cstring()                   // movie identifier
	for n := r.u8(); n > 0; n-- {
		r.cstring() // server entries
	}
	for n := r.u8(); n > 0; n-- {
		r.cstring() // quality entries
	}
	r.cstring() // drm data
	r.cstring() // metadata
	segs := []uint32{}
	for n := r.u8(); n > 0; n-- {
		b, t, err := box(r.rest())
		if err != nil {
			return nil, err
		}
		r.skip(boxLen(r.rest()))
		if t != "asrt" {
			continue
		}
		ar := &reader{b: b}
		ar.skip(4)
		for q := ar.u8(); q > 0; q-- {
			ar.cstring()
		}
		for e := ar.u32(); e > 0 && ar.err == nil; e-- {
			segs = append(segs, ar.u32())
			ar.u32() // fragments per segment
		}
	}
	seg := uint32(1)
	if len(segs) > 0 {
		seg = segs[len(segs)-1]
	}
	var runs []fragRun
	for n := r.u8(); n > 0; n-- {
		b, t, err := box(r.rest())
		if err != nil {
			return nil, err
		}
		r.skip(boxLen(r.rest()))
		if t != "afrt" {
			continue
		}
		fr := &reader{b: b}
		fr.skip(4 + 4) // version/flags, timescale
		for q := fr.u8(); q > 0; q-- {
			fr.cstring()
		}
		type entry struct {
			first, dur uint32
		}
		var es []entry
		for e := fr.u32(); e > 0 && fr.err == nil; e-- {
			first := fr.u32()
			fr.skip(8)
			dur := fr.u32()
			if dur == 0 {
				fr.u8() // discontinuity indicator
			}
			es = append(es, entry{first, dur})
		}
		if fr.err != nil {
			return nil, fmt.Errorf("parse bootstrap: afrt: %w", fr.err)
		}
		for i, e := range es {
			if e.dur == 0 {
				continue
			}
			if i+1 < len(es) && es[i+1].first > e.first {
				runs = append(runs, fragRun{seg: seg, first: e.first, last: es[i+1].first - 1})
			} else {
				runs = append(runs, fragRun{seg: seg, first: e.first, last: e.first, open: i == len(es)-1})
			}
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("parse bootstrap: %w", r.err)
	}
	return runs, nil
}

var errShort = errors.New("box truncated")

func boxLen(b []byte) int {
	if len(b) < 8 {
		return len(b)
	}
	n := uint64(binary.BigEndian.Uint32(b))
	if n == 1 && len(b) >= 16 {
		n = binary.BigEndian.Uint64(b[8:])
	}
	if n == 0 || n > uint64(len(b)) {
		return len(b)
	}
	return int(n)
}

// box returns the body and type of the ISO box at the start of b.
func box(b []byte) ([]byte, string, error) {
	if len(b) < 8 {
		return nil, "", errShort
	}
	n := uint64(binary.BigEndian.Uint32(b))
	typ := string(b[4:8])
	hdr := uint64(8)
	if n == 1 {
		if len(b) < 16 {
			return nil, "", errShort
		}
		n, hdr = binary.BigEndian.Uint64(b[8:]), 16
	}
	if n == 0 {
		n = uint64(len(b))
	}
	if n < hdr || n > uint64(len(b)) {
		return nil, "", errShort
	}
	return b[hdr:n], typ, nil
}

// reader reads big-endian fields and remembers the first short read.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n > len(r.b) {
		r.err = errShort
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) skip(n int)   { r.take(n) }
func (r *reader) u8() uint8    { return r.take(1)[0] }
func (r *reader) u32() uint32  { return binary.BigEndian.Uint32(r.take(4)) }
func (r *reader) rest() []byte { return r.b }
func (r *reader) cstring() []byte {
	i := bytes.IndexByte(r.b, 0)
	if i < 0 {
		r.err = errShort
		r.b = nil
		return nil
	}
	return r.take(i + 1)
}

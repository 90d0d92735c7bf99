package s3upload

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/emsflow/emsflow/event"
)

// errRefused marks a path that is refused because it is not inside the media roots. It is a
// permanent error and a security event.
var errRefused = errors.New("path refused")

// refusal is a refused path with the reason, for the log and the counter.
type refusal struct {
	path   string
	reason string
}

func (r *refusal) Error() string { return fmt.Sprintf("%s %q: %s", errRefused, r.path, r.reason) }
func (r *refusal) Unwrap() error { return errRefused }

// Refusal reasons, the values of the refused counter's reason label.
const (
	reasonEmpty      = "empty_path"
	reasonRelative   = "relative_path"
	reasonDotDot     = "dot_dot"
	reasonOutside    = "outside_media_roots"
	reasonSymlink    = "symlink_escapes"
	reasonNotRegular = "not_a_regular_file"
)

// mediaRoot is one configured folder files may be read from. The os.Root makes every open
// relative to it, so neither ".." nor a symlink can lead a read outside, even if the tree changes
// between the check and the open.
type mediaRoot struct {
	dir  string // as configured, cleaned and absolute
	real string // dir with symlinks resolved
	root *os.Root
}

// roots holds the media roots; a root that does not exist yet is opened when first needed.
type roots struct {
	mu   sync.Mutex
	dirs []string
	open map[string]*mediaRoot
}

func newRoots(dirs []string) *roots { return &roots{dirs: dirs, open: map[string]*mediaRoot{}} }

// get returns the opened root for dir, opening it now if needed.
func (r *roots) get(dir string) (*mediaRoot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if mr, ok := r.open[dir]; ok {
		return mr, nil
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("open media root %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open media root %s: %w", dir, err)
	}
	mr := &mediaRoot{dir: dir, real: real, root: root}
	r.open[dir] = mr
	return mr, nil
}

// available returns the roots that exist now.
func (r *roots) available() []*mediaRoot {
	var out []*mediaRoot
	for _, d := range r.dirs {
		if mr, err := r.get(d); err == nil {
			out = append(out, mr)
		}
	}
	return out
}

func (r *roots) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for d, mr := range r.open {
		errs = append(errs, mr.root.Close())
		delete(r.open, d)
	}
	return errors.Join(errs...)
}

// locate maps an EMS file path to its media root and the path relative to it, by looking at the
// path only (nothing is read). It refuses empty and relative paths, any ".." component, and paths
// outside every media root.
func (r *roots) locate(emsPath string) (dir, rel string, err error) {
	p := event.NormalizePath(strings.TrimSpace(emsPath))
	if p == "" {
		return "", "", &refusal{emsPath, reasonEmpty}
	}
	for part := range strings.SplitSeq(p, "/") {
		if part == ".." {
			return "", "", &refusal{emsPath, reasonDotDot}
		}
	}
	native := filepath.Clean(filepath.FromSlash(p))
	if !filepath.IsAbs(native) {
		return "", "", &refusal{emsPath, reasonRelative}
	}
	for _, d := range r.dirs {
		if native == d {
			return d, ".", nil
		}
		if strings.HasPrefix(native, d+string(filepath.Separator)) || d == string(filepath.Separator) {
			rel := strings.TrimPrefix(native[len(d):], string(filepath.Separator))
			return d, rel, nil
		}
	}
	return "", "", &refusal{emsPath, reasonOutside}
}

// openFile opens a regular file under the media roots for reading. Besides locate's checks, the
// file's real path (symlinks resolved) must stay inside the root's real path; the open itself
// goes through os.Root.
func (r *roots) openFile(emsPath string) (*os.File, fs.FileInfo, error) {
	dir, rel, err := r.locate(emsPath)
	if err != nil {
		return nil, nil, err
	}
	mr, err := r.get(dir)
	if err != nil {
		return nil, nil, err
	}
	abs := filepath.Join(dir, rel)
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, nil, fmt.Errorf("resolve %s: %w", abs, err)
	}
	if real != mr.real && !strings.HasPrefix(real, mr.real+string(filepath.Separator)) {
		return nil, nil, &refusal{emsPath, reasonSymlink}
	}
	f, err := mr.root.Open(rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("open %s: %w", abs, err)
		}
		// os.Root refuses escapes with an error of its own; the checks above make this rare.
		return nil, nil, &refusal{emsPath, reasonSymlink}
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("stat %s: %w", abs, err)
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, nil, &refusal{emsPath, reasonNotRegular}
	}
	return f, info, nil
}

// rootPresent reports whether the media root of emsPath exists now as a folder. A file missing
// under a present root was deleted; under an absent one (an unmounted share) it may come back.
func (r *roots) rootPresent(emsPath string) bool {
	dir, _, err := r.locate(emsPath)
	if err != nil {
		return false
	}
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}

// stat returns the file's info through the same checks as openFile.
func (r *roots) stat(emsPath string) (fs.FileInfo, error) {
	f, info, err := r.openFile(emsPath)
	if err != nil {
		return nil, err
	}
	f.Close()
	return info, nil
}

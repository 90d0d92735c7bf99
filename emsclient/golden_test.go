package emsclient_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/emsclient/emstest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestReferenceExamples calls each typed method with the parameters of the matching example URL
// of reference §3.3 and compares what went on the wire with the example: every parameter of the
// example is sent with the same value, and the only additions are the explicit defaults the
// method always sends. The decoded text is also kept as a golden file (go test -update).
func TestReferenceExamples(t *testing.T) {
	tests := []struct {
		name    string
		command string
		example string // the base64 of the example URL, as printed in the reference
		// extra are the parameters the method adds on purpose (reference §7 conflicts).
		extra map[string]string
		call  func(ctx context.Context, c *emsclient.Client) error
	}{
		{
			name: "pullStream", command: "pullStream",
			example: "dXJpPXJ0bXA6Ly8xOTIuMTY4LjEuNS9saXZlL2NhbTEgbG9jYWxTdHJlYW1OYW1lPWNhbTEga2VlcEFsaXZlPTEgZm9yY2VUY3A9MA==",
			call: func(ctx context.Context, c *emsclient.Client) error {
				_, err := c.PullStream(ctx, emsclient.PullStreamParams{
					URI: "rtmp://192.168.1.5/live/cam1", LocalStreamName: "cam1", KeepAlive: emsclient.Bool(true), ForceTCP: false,
				})
				return err
			},
		},
		{
			name: "pushStream", command: "pushStream",
			example: "dXJpPXJ0bXA6Ly8xMC4wLjAuNy9saXZlIGxvY2FsU3RyZWFtTmFtZT1jYW0xIHRhcmdldFN0cmVhbU5hbWU9Y2FtMSBrZWVwQWxpdmU9MQ==",
			call: func(ctx context.Context, c *emsclient.Client) error {
				_, err := c.PushStream(ctx, emsclient.PushStreamParams{
					URI: "rtmp://10.0.0.7/live", LocalStreamName: "cam1", TargetStreamName: "cam1", KeepAlive: emsclient.Bool(true),
				})
				return err
			},
		},
		{
			name: "record", command: "record",
			example: "bG9jYWxTdHJlYW1OYW1lPWNhbTEgcGF0aFRvRmlsZT0vdmFyL2V2b3N0cmVhbW1zL21lZGlhL2NhbTEgdHlwZT1tcDQgb3ZlcndyaXRlPTAga2VlcEFsaXZlPTEgY2h1bmtMZW5ndGg9NjAwIHdpblF0Q29tcGF0PTEgX2pvYj00Mg==",
			extra:   map[string]string{"waitForIDR": "0"},
			call: func(ctx context.Context, c *emsclient.Client) error {
				_, err := c.Record(ctx, emsclient.RecordParams{
					LocalStreamName: "cam1", PathToFile: "/var/evostreamms/media/cam1", Type: "mp4", Overwrite: false,
					KeepAlive: emsclient.Bool(true), ChunkLength: 600, WinQtCompat: true,
					UserVars: map[string]string{"_job": "42"},
				})
				return err
			},
		},
		{
			name: "createHLSStream", command: "createHLSStream",
			example: "bG9jYWxTdHJlYW1OYW1lcz1jYW0xIHRhcmdldEZvbGRlcj0vdmFyL2V2by13ZWJyb290IGdyb3VwTmFtZT1jYW0xIHBsYXlsaXN0VHlwZT1yb2xsaW5nIHBsYXlsaXN0TGVuZ3RoPTEwIGNodW5rTGVuZ3RoPTYga2VlcEFsaXZlPTE=",
			call: func(ctx context.Context, c *emsclient.Client) error {
				_, err := c.CreateHLSStream(ctx, emsclient.HLSParams{
					LocalStreamNames: []string{"cam1"}, TargetFolder: "/var/evo-webroot", GroupName: "cam1",
					PlaylistType: "rolling", PlaylistLength: 10, ChunkLength: 6, KeepAlive: emsclient.Bool(true),
				})
				return err
			},
		},
		{
			name: "createHDSStream", command: "createHDSStream",
			example: "bG9jYWxTdHJlYW1OYW1lcz1jYW0xIHRhcmdldEZvbGRlcj0vdmFyL2V2by13ZWJyb290IGdyb3VwTmFtZT1oZHMgcGxheWxpc3RUeXBlPXJvbGxpbmc=",
			call: func(ctx context.Context, c *emsclient.Client) error {
				_, err := c.CreateHDSStream(ctx, emsclient.HDSParams{
					LocalStreamNames: []string{"cam1"}, TargetFolder: "/var/evo-webroot", GroupName: "hds", PlaylistType: "rolling",
				})
				return err
			},
		},
		{
			name: "createDASHStream", command: "createDASHStream",
			example: "bG9jYWxTdHJlYW1OYW1lcz1jYW0xIHRhcmdldEZvbGRlcj0vdmFyL2V2by13ZWJyb290IGdyb3VwTmFtZT1kYXNo",
			call: func(ctx context.Context, c *emsclient.Client) error {
				_, err := c.CreateDASHStream(ctx, emsclient.DASHParams{
					LocalStreamNames: []string{"cam1"}, TargetFolder: "/var/evo-webroot", GroupName: "dash",
				})
				return err
			},
		},
		{
			name: "createMSSStream", command: "createMSSStream",
			example: "bG9jYWxTdHJlYW1OYW1lcz1jYW0xIHRhcmdldEZvbGRlcj0vdmFyL2V2by13ZWJyb290IGdyb3VwTmFtZT1tc3M=",
			extra:   map[string]string{"chunkOnIDR": "1"},
			call: func(ctx context.Context, c *emsclient.Client) error {
				_, err := c.CreateMSSStream(ctx, emsclient.MSSParams{
					LocalStreamNames: []string{"cam1"}, TargetFolder: "/var/evo-webroot", GroupName: "mss", ChunkOnIDR: true,
				})
				return err
			},
		},
		{
			name: "shutdownStream", command: "shutdownStream",
			example: "aWQ9NTUgcGVybWFuZW50bHk9MA==",
			call: func(ctx context.Context, c *emsclient.Client) error {
				return c.ShutdownStream(ctx, emsclient.ShutdownParams{ID: 55, Permanently: false})
			},
		},
		{
			name: "removeConfig", command: "removeConfig",
			example: "aWQ9NyByZW1vdmVIbHNIZHNGaWxlcz0x",
			call: func(ctx context.Context, c *emsclient.Client) error {
				return c.RemoveConfig(ctx, emsclient.RemoveConfigParams{ID: 7, RemoveHLSHDSFiles: true})
			},
		},
		{
			name: "getStreamInfo", command: "getStreamInfo",
			example: "bG9jYWxTdHJlYW1OYW1lPWNhbTE=",
			call: func(ctx context.Context, c *emsclient.Client) error {
				_, err := c.GetStreamInfo(ctx, emsclient.StreamRef{LocalStreamName: "cam1"})
				return err
			},
		},
		{
			name: "setTimer", command: "setTimer",
			example: "dmFsdWU9MzYwMCBfdW5pcXVlSWQ9MTI=",
			call: func(ctx context.Context, c *emsclient.Client) error {
				_, err := c.SetTimer(ctx, emsclient.TimerParams{Value: "3600", UserVars: map[string]string{"_uniqueId": "12"}})
				return err
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := emstest.NewServer(t)
			if err := tt.call(t.Context(), srv.Client()); err != nil {
				t.Fatalf("call: %v", err)
			}
			calls := srv.Calls()
			if len(calls) != 1 {
				t.Fatalf("got %d calls, want 1: %+v", len(calls), calls)
			}
			got := calls[0]
			if got.Command != tt.command {
				t.Errorf("command = %q, want %q", got.Command, tt.command)
			}
			if got.Path != "/"+tt.command {
				t.Errorf("path = %q, want %q", got.Path, "/"+tt.command)
			}
			b64, ok := strings.CutPrefix(got.RawQuery, "params=")
			if !ok {
				t.Fatalf("query = %q, want params=<base64>", got.RawQuery)
			}
			if strings.Contains(b64, "%") {
				t.Errorf("params are percent-encoded: %q", b64)
			}
			if len(tt.extra) == 0 && b64 != tt.example {
				t.Errorf("params = %s, want exactly the reference's %s", b64, tt.example)
			}

			want, err := emsclient.DecodeParams(tt.example)
			if err != nil {
				t.Fatalf("decode example: %v", err)
			}
			sent := map[string]string{}
			for _, p := range got.Params {
				if _, dup := sent[p.Key]; dup {
					t.Errorf("parameter %s sent twice", p.Key)
				}
				sent[p.Key] = p.Value()
			}
			for _, p := range want {
				v, ok := sent[p.Key]
				switch {
				case !ok:
					t.Errorf("parameter %s=%s of the example was not sent", p.Key, p.Value())
				case v != p.Value():
					t.Errorf("parameter %s = %q, want %q", p.Key, v, p.Value())
				}
				delete(sent, p.Key)
			}
			for k, v := range sent {
				if want, ok := tt.extra[k]; !ok || want != v {
					t.Errorf("unexpected parameter %s=%s (allowed extras: %v)", k, v, tt.extra)
				}
			}

			checkGolden(t, filepath.Join("testdata", tt.name+".golden"), tt.command+"\n"+got.Params.Text()+"\n"+b64+"\n")
		})
	}
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

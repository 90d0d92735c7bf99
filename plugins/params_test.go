package plugins

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeParams(t *testing.T) {
	type params struct {
		Period  Duration `json:"period_time"`
		Count   int      `json:"count"`
		On      *bool    `json:"on"`
		Targets []string `json:"targets"`
	}
	tests := []struct {
		name    string
		raw     string
		want    params
		wantErr []string // every fragment must be in the error
	}{
		{"INI strings coerced", `{"period_time":"90","count":"3","on":"enabled","targets":"a"}`,
			params{Period: Duration(90 * time.Second), Count: 3, On: ptr(true), Targets: []string{"a"}}, nil},
		{"JSON values", `{"period_time":"5m","count":3,"on":false,"targets":["a","b"]}`,
			params{Period: Duration(5 * time.Minute), Count: 3, On: ptr(false), Targets: []string{"a", "b"}}, nil},
		{"a bad duration names its parameter", `{"period_time":"soon"}`, params{},
			[]string{`parameter "period_time"`, `"soon" is not a duration`}},
		{"a bad number of seconds names its parameter", `{"period_time":true}`, params{},
			[]string{`parameter "period_time"`, "not a duration"}},
		{"every problem at once", `{"period_time":"soon","count":"many","colour":"red"}`, params{},
			[]string{`parameter "period_time"`, `parameter "count": "many" is not an integer`, `unknown parameter "colour"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got params
			err := DecodeParams([]byte(tt.raw), &got)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got.Period != tt.want.Period || got.Count != tt.want.Count || *got.On != *tt.want.On || strings.Join(got.Targets, ",") != strings.Join(tt.want.Targets, ",") {
					t.Errorf("got %+v, want %+v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one with %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

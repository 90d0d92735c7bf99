// Package admin serves the operator endpoints mounted under /admin: listing and re-driving the
// events that plugins gave up on.
//
//	GET  /admin/deadletters?plugin=NAME&limit=N       the dead letters, oldest first
//	POST /admin/deadletters/redrive?plugin=NAME&seq=N  re-drive one (seq) or all of a plugin
package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/internal/journal"
	"github.com/emsflow/emsflow/internal/logfield"
)

// DeadLetters is what the handler needs of the journal.
type DeadLetters interface {
	DeadLetters(ctx context.Context, plugin string, limit int) ([]journal.DeadLetter, error)
	Redrive(ctx context.Context, plugin string, seq uint64) (int, error)
}

// New returns the admin handler.
func New(j DeadLetters, log zerolog.Logger) http.Handler {
	r := chi.NewRouter()
	r.Get("/deadletters", func(w http.ResponseWriter, r *http.Request) {
		limit := 100
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a non-negative integer"})
				return
			}
			limit = n
		}
		dl, err := j.DeadLetters(r.Context(), r.URL.Query().Get("plugin"), limit)
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		if dl == nil {
			dl = []journal.DeadLetter{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"dead_letters": dl, "count": len(dl)})
	})
	r.Post("/deadletters/redrive", func(w http.ResponseWriter, r *http.Request) {
		plugin := r.URL.Query().Get("plugin")
		var seq uint64
		if s := r.URL.Query().Get("seq"); s != "" {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "seq must be a positive integer"})
				return
			}
			seq = n
		}
		if plugin == "" && seq == 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "name a plugin (plugin=NAME) or a dead letter (seq=N)"})
			return
		}
		n, err := j.Redrive(r.Context(), plugin, seq)
		log.Info().Str(logfield.Plugin, plugin).Uint64("seq", seq).Int(logfield.Count, n).Err(err).Msg("dead letters re-driven")
		if err != nil {
			writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "redriven": n})
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"redriven": n})
	})
	return r
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

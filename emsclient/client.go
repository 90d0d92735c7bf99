// Package emsclient is a typed client for the EvoStream Media Server HTTP API.
package emsclient

import "net/http"

// Client calls one EMS server's HTTP API.
type Client struct {
	base string
	hc   *http.Client
}

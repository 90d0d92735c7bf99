package sinks

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// loadCAFile returns the system roots with the certificate authorities of a PEM file added, for
// a sink whose server's certificate comes from a private CA.
func loadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil { // no system roots: the file's are the only ones
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// withRoots returns a client like c whose TLS connections trust roots; c is not changed. With
// no roots it returns c.
func withRoots(c *http.Client, roots *x509.CertPool) (*http.Client, error) {
	if roots == nil {
		return c, nil
	}
	base := http.DefaultTransport
	if c.Transport != nil {
		base = c.Transport
	}
	t, ok := base.(*http.Transport)
	if !ok {
		return nil, errors.New("ca_file: the HTTP client's transport cannot be given other roots")
	}
	t = t.Clone()
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	t.TLSClientConfig.RootCAs = roots
	cc := *c
	cc.Transport = t
	return &cc, nil
}

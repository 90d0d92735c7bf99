package transcoderesetter

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Kind is the plugin type name in configuration, as the PHP web services' config.ini lists it.
const Kind = "TranscodeResetter"

// Config holds the resetter's parameters. The original had none, so the PHP config.ini's
// "TranscodeResetter = enabled" without a section loads as it is.
type Config struct {
	// VideoFeedStopped also shuts a stream down when its video stops (videoFeedStopped);
	// default false, as the original reacted to audioFeedStopped only.
	VideoFeedStopped bool `json:"video_feed_stopped"`
	// Permanently is shutdownStream's permanently: true (the default, as the original) also
	// removes the stream's pull, push or record config, so it does not come back; false only
	// cuts the stream, and a keepAlive pull reconnects it, which restarts it.
	Permanently *bool `json:"permanently"`
	// EMS names the configured EMS servers whose streams are reset; default all of them.
	EMS []string `json:"ems"`
}

// Validate checks the parameters; it reports every problem. ems lists the configured EMS
// names.
func (c *Config) Validate(ems []string) error {
	var errs []error
	for _, n := range c.EMS {
		if !slices.Contains(ems, n) {
			errs = append(errs, fmt.Errorf("ems %q is not a configured EMS (configured: %s)", n, strings.Join(ems, ", ")))
		}
	}
	return errors.Join(errs...)
}

func (c *Config) permanently() bool { return c.Permanently == nil || *c.Permanently }

package rules

import (
	"strconv"
	"strings"

	"github.com/emsflow/emsflow/emsclient"
)

// lockKey names what an action's check and call must not race with on the target EMS: the thing
// the check looks for. Two actions that could each find or make the same config, stream or timer
// get the same key; actions about different things (another stream's group, another pull) get
// different keys and run concurrently. The parameters keyed on are the ones the command
// requires, so a key never depends on an optional parameter one action sets and another leaves
// to EMS.
func lockKey(target string, cmd *command, ps emsclient.Params) string {
	get := func(k string) string { v, _ := ps.Get(k); return v }
	parts := []string{target, strconv.Itoa(int(cmd.check))}
	switch cmd.check {
	case checkGroup:
		parts = append(parts, cmd.kind, get("groupName"))
	case checkPull:
		parts = append(parts, get("uri"))
	case checkPush:
		parts = append(parts, get("uri"), get("localStreamName"))
	case checkRecord:
		parts = append(parts, get("localStreamName"), get("pathToFile"))
	case checkTimer:
		parts = append(parts, get("value"))
	case checkStream:
		if id, ok := ps.Get("id"); ok {
			parts = append(parts, "id", id)
		} else {
			parts = append(parts, "name", get("localStreamName"))
		}
	case checkConfig:
		if id, ok := ps.Get("id"); ok {
			parts = append(parts, "id", id)
		} else {
			parts = append(parts, "group", get("groupName"))
		}
	case checkTimerGone:
		parts = append(parts, get("id"))
	}
	return strings.Join(parts, "\x00")
}

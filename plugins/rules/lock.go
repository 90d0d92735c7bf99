package rules

import (
	"strconv"
	"strings"
	"sync"

	"github.com/emsflow/emsflow/emsclient"
)

// keyedMutex holds one mutex per key, and only while someone holds or waits for it, so the map
// does not grow with every stream name ever seen.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*refMutex
}

type refMutex struct {
	sync.Mutex
	refs int // holders and waiters; guarded by keyedMutex.mu
}

// lock locks key and returns the function that unlocks it.
func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*refMutex{}
	}
	l, ok := k.m[key]
	if !ok {
		l = &refMutex{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		defer k.mu.Unlock()
		l.refs--
		if l.refs == 0 {
			delete(k.m, key)
		}
	}
}

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

// Package loadbalancer is the StreamLoadBalancer plugin: when a stream appears on one EMS, every
// other EMS of the group (destination_uri) pulls it from there under the same name
// (reference §4.3), and the group stays that way.
//
// What it fixes: the source is really skipped (the Node original pulled from itself too);
// replicas are tagged, so the replica's own inStreamCreated on another EMS is never replicated
// back (the original's tag check could not work as it never set the tag); replica pulls keep
// themselves alive; a duplicated event or a restart never makes a second pull (each destination's
// listConfig is checked under a per-stream lock first); when the origin's stream goes for good
// (its pull config removed, or its publisher gone and not back) the replicas are removed; and
// Reconcile brings back replicas that a restarted destination lost, creates those whose event
// was missed, and removes those whose origin is gone.
//
// An origin stream is an inbound stream on an EMS in scope that emsflow did not create: a pull
// config there, or a live published stream.
package loadbalancer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/emsclient"
	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/logfield"
	"github.com/emsflow/emsflow/plugins"
	"github.com/emsflow/emsflow/plugins/internal/act"
	"github.com/emsflow/emsflow/plugins/provenance"
)

// member is one EMS of the group.
type member struct {
	key    string // API URL without credentials: scheme://host:port/path
	client *emsclient.Client
	rtmp   string // rtmp://host[:port]/app this server's streams are pulled from
	given  bool   // rtmp came from the destination's own rtmp_url, not from its API address
	plain  bool   // given as a plain IP or host, as the original's destinations
	host   string // the API host
}

// Balancer is one StreamLoadBalancer instance. Handle and Reconcile are safe for concurrent use.
type Balancer struct {
	name    string
	cfg     Config
	members []member
	ems     map[string]*emsclient.Client
	rtmp    map[string]string // EMS name -> its configured rtmp_url, no trailing slash
	fleet   act.Scope
	log     zerolog.Logger
	metrics *act.Metrics
	locks   act.Locks
}

var (
	_ plugins.Plugin     = (*Balancer)(nil)
	_ plugins.Reconciler = (*Balancer)(nil)
)

// Factory builds a Balancer from its configuration parameters, for the plugin registry.
var Factory = plugins.FactoryOf(New)

// New validates cfg and builds a client for every destination with deps.HTTPClient. It does no
// I/O.
func New(name string, cfg Config, deps plugins.Deps) (*Balancer, error) {
	if err := cfg.Validate(slices.Sorted(maps.Keys(deps.EMS))); err != nil {
		return nil, err
	}
	hc := deps.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	b := &Balancer{
		name: name, cfg: cfg, ems: deps.EMS, fleet: act.NewScope(deps.EMS, deps.DefaultEMS, cfg.EMS), log: deps.Log,
		metrics: act.NewMetrics(deps.Metrics, "loadbalancer"),
	}
	var errs []error
	b.rtmp = make(map[string]string, len(deps.RTMPURLs))
	for _, n := range slices.Sorted(maps.Keys(deps.RTMPURLs)) {
		if strings.TrimSpace(deps.RTMPURLs[n]) == "" {
			continue
		}
		u, err := rtmpBase(deps.RTMPURLs[n])
		if err != nil {
			errs = append(errs, fmt.Errorf("ems %q rtmp_url: %w", n, err))
			continue
		}
		b.rtmp[n] = u
	}
	seen := map[string]bool{}
	for i, d := range cfg.DestinationURI {
		r, _ := d.resolve() // validated above
		c, err := emsclient.New(r.api, hc)
		if err != nil {
			errs = append(errs, fmt.Errorf("destination_uri[%d]: %w", i, err))
			continue
		}
		m := member{key: apiKey(c.BaseURL()), client: c, rtmp: r.rtmp, given: strings.TrimSpace(d.RTMPURL) != "", plain: !strings.Contains(d.APIURL, "://")}
		if u, err := url.Parse(c.BaseURL()); err == nil {
			m.host = u.Hostname()
		}
		if seen[m.key] {
			errs = append(errs, fmt.Errorf("destination_uri[%d]: %s is listed twice", i, c.BaseURL()))
			continue
		}
		seen[m.key] = true
		b.members = append(b.members, m)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return b, nil
}

// apiKey identifies an EMS API by scheme, host, port and path, credentials left out.
func apiKey(api string) string {
	u, err := url.Parse(api)
	if err != nil {
		return api
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return strings.ToLower(u.Scheme+"://"+u.Hostname()+":"+port) + strings.TrimRight(u.Path, "/")
}

// Name returns the instance name.
func (b *Balancer) Name() string { return b.name }

// Events returns inStreamCreated (replicate), inStreamClosed (remove replicas of an origin that
// is gone) and serverStarted (an EMS that restarted may have lost its replicas).
func (b *Balancer) Events() []string {
	return []string{event.InStreamCreated, event.InStreamClosed, event.ServerStarted}
}

// ReconcileInterval returns reconcile_interval.
func (b *Balancer) ReconcileInterval() time.Duration { return b.cfg.interval() }

// Handle replicates the stream of an inStreamCreated, removes the replicas of an origin stream
// that closed for good, and reconciles the group when an EMS (re)started.
func (b *Balancer) Handle(ctx context.Context, ev *event.Event) error {
	switch ev.Type {
	case event.ServerStarted:
		return b.Reconcile(ctx)
	case event.InStreamCreated, event.InStreamClosed:
	default:
		return nil
	}
	src := b.fleet.Source(ev)
	client, ok := b.ems[src]
	if !ok {
		return plugins.Permanent(fmt.Errorf("replicate %s: no EMS client for %q", ev.Payload.Name(), src))
	}
	name := ev.Payload.Name()
	if !b.fleet.Contains(src) {
		b.skip(src, name, "", act.SkipScope, "")
		return nil
	}
	if !ev.Payload.IsInbound() || name == "" {
		b.skip(src, name, "", act.SkipNotInbound, ev.Payload.StreamType())
		return nil
	}
	if by, ok := provenance.Creator(ev.Payload); ok {
		if ev.Type == event.InStreamCreated {
			b.skip(src, name, "", act.SkipLoopGuard, "created by emsflow instance "+by)
		}
		return nil
	}
	if ev.Type == event.InStreamClosed {
		return b.retire(ctx, src, client, name, false)
	}
	snap := act.NewSnapshot(b.ems)
	peers, peerErrs := snap.Peers(ctx, src)
	for _, err := range peerErrs {
		b.log.Warn().Err(err).Str(logfield.EMS, src).Str(logfield.Stream, name).Msg("loop guard checked without an unreachable EMS")
	}
	if peer, ok := provenance.PushedBy(ev.Payload, peers); ok {
		b.skip(src, name, "", act.SkipLoopGuard, "pushed here by emsflow from "+peer)
		return nil
	}
	return b.replicate(ctx, src, client, ev.Payload, name, nil, false)
}

// Reconcile makes the group what it should be: every origin stream on every EMS in scope has a
// replica on every other member, and every replica this instance made whose origin stream is
// gone is removed. An origin that cannot be reached is left alone, and so are its replicas.
func (b *Balancer) Reconcile(ctx context.Context) error {
	ctx, cancel := act.ReconcileContext(ctx)
	defer cancel()
	snap := act.NewSnapshot(b.ems)
	memberSnap := act.NewSnapshot(b.memberClients())
	var errs []error
	want := map[string]map[string]bool{} // origin EMS -> origin stream names
	for _, src := range b.fleet.Names() {
		cl, err := snap.Configs(ctx, src)
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile %s: %w", src, err))
			continue
		}
		streams, err := snap.Streams(ctx, src)
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile %s: %w", src, err))
			continue
		}
		peers, _ := snap.Peers(ctx, src)
		names := originStreams(cl, streams, peers)
		want[src] = names
		live := act.LiveInbound(streams)
		for _, n := range slices.Sorted(maps.Keys(names)) {
			if err := b.replicate(ctx, src, b.ems[src], live[n], n, memberSnap, true); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, m := range b.members {
		cl, err := memberSnap.Configs(ctx, m.key)
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile destination %s: %w", m.client, err))
			continue
		}
		for _, p := range cl.Pull {
			by, _ := provenance.Creator(p)
			origin := provenance.Origin(p)
			name, _ := p.String("localStreamName")
			names, known := want[origin]
			if by != b.name || !known || names[name] {
				continue
			}
			if err := b.removeReplicas(ctx, origin, b.ems[origin], name, []member{m}, true); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// originStreams returns the names of the origin streams of one EMS: pull configs and live
// inbound streams that emsflow did not create.
func originStreams(cl *emsclient.ConfigList, streams []event.Payload, peers map[string]*emsclient.ConfigList) map[string]bool {
	out := map[string]bool{}
	for _, p := range cl.Pull {
		if _, ours := provenance.Creator(p); ours {
			continue
		}
		if n, _ := p.String("localStreamName"); n != "" {
			out[n] = true
		}
	}
	for n, st := range act.LiveInbound(streams) {
		if _, ours := provenance.Creator(st); ours {
			continue
		}
		if _, pushed := provenance.PushedBy(st, peers); pushed {
			continue
		}
		out[n] = true
	}
	return out
}

// replicate makes every member but the origin pull stream name from EMS src; stream is its
// payload when known. memberSnap, when set, answers the first check; the check that counts is
// made under the lock.
func (b *Balancer) replicate(ctx context.Context, src string, client *emsclient.Client, stream event.Payload, name string, memberSnap *act.Snapshot, repair bool) error {
	origin := b.memberOf(src, client, stream)
	base := b.rtmpOf(src, client, origin, stream)
	uri := base + "/" + name
	var errs []error
	for _, m := range b.members {
		if origin != nil && m.key == origin.key {
			if !repair {
				b.skip(src, name, m.client.String(), act.SkipSelf, "")
			}
			continue
		}
		if err := b.ensureReplica(ctx, src, name, uri, m, memberSnap, repair); err != nil {
			errs = append(errs, err)
		}
	}
	return act.Join(errs...)
}

// ensureReplica makes member m pull uri as name, unless a pull of that name exists there or a
// stream of that name already runs there.
func (b *Balancer) ensureReplica(ctx context.Context, src, name, uri string, m member, memberSnap *act.Snapshot, repair bool) error {
	if memberSnap != nil {
		cl, err := memberSnap.Configs(ctx, m.key)
		if err != nil {
			return fmt.Errorf("replicate %s from %s to %s: %w", name, src, m.client, err)
		}
		if hasPull(cl, name) {
			return nil
		}
	}
	unlock := b.locks.Lock(m.key + "\x00" + name)
	defer unlock()
	cl, err := m.client.ListConfig(ctx)
	if err != nil {
		return fmt.Errorf("replicate %s from %s to %s: list configs: %w", name, src, m.client, err)
	}
	if hasPull(cl, name) {
		if !repair {
			b.skip(src, name, m.client.String(), act.SkipDuplicate, "")
		}
		return nil
	}
	streams, err := m.client.ListStreams(ctx)
	if err != nil {
		return fmt.Errorf("replicate %s from %s to %s: list streams: %w", name, src, m.client, err)
	}
	if _, live := act.LiveInbound(streams)[name]; live {
		if !repair {
			b.skip(src, name, m.client.String(), act.SkipExists, "")
		}
		return nil
	}
	sc, err := m.client.PullStream(ctx, emsclient.PullStreamParams{
		URI:             uri,
		LocalStreamName: name,
		KeepAlive:       emsclient.Bool(b.cfg.keepAlive()),
		ForceTCP:        false,
		UserVars:        provenance.Vars(b.name, src),
	})
	if err != nil {
		return fmt.Errorf("replicate %s from %s to %s: %w", name, src, m.client, err)
	}
	l, msg := b.log.Info(), "replicated stream"
	if repair {
		b.metrics.Repair("pull")
		l, msg = b.log.Warn(), "repaired: replicated stream missing on a destination"
	} else {
		b.metrics.Action("pull")
	}
	l.Str(logfield.EMS, src).Str(logfield.Stream, name).Str(logfield.Target, m.client.String()).
		Str(logfield.Path, redact(uri)).Uint64(logfield.ConfigID, sc.ConfigID).Msg(msg)
	return nil
}

// hasPull reports whether a pull config of stream name exists, whoever made it.
func hasPull(cl *emsclient.ConfigList, name string) bool {
	for _, p := range cl.Pull {
		if n, _ := p.String("localStreamName"); n == name {
			return true
		}
	}
	return false
}

// retire removes the replicas of origin stream name of src on every member, unless the origin
// still has it: a pull config (which reconnects by itself) or a live stream of that name.
func (b *Balancer) retire(ctx context.Context, src string, client *emsclient.Client, name string, repair bool) error {
	return b.removeReplicas(ctx, src, client, name, b.members, repair)
}

// removeReplicas removes this instance's replicas of stream name from origin src on members,
// after checking (fresh) that the origin no longer has the stream.
func (b *Balancer) removeReplicas(ctx context.Context, src string, client *emsclient.Client, name string, members []member, repair bool) error {
	wanted, err := b.originHas(ctx, client, name)
	if err != nil {
		return fmt.Errorf("remove replicas of %s from %s: %w", name, src, err)
	}
	if wanted {
		if !repair {
			b.skip(src, name, "", act.SkipLive, "")
		}
		return nil
	}
	var errs []error
	for _, m := range members {
		if err := b.removeReplica(ctx, src, name, m, repair); err != nil {
			errs = append(errs, err)
		}
	}
	return act.Join(errs...)
}

func (b *Balancer) removeReplica(ctx context.Context, src, name string, m member, repair bool) error {
	unlock := b.locks.Lock(m.key + "\x00" + name)
	defer unlock()
	cl, err := m.client.ListConfig(ctx)
	if err != nil {
		return fmt.Errorf("remove replica of %s from %s on %s: %w", name, src, m.client, err)
	}
	var errs []error
	for _, p := range cl.Pull {
		n, _ := p.String("localStreamName")
		by, _ := provenance.Creator(p)
		id, ok := p.Uint64("configId")
		if n != name || by != b.name || provenance.Origin(p) != src || !ok {
			continue
		}
		if err := m.client.RemoveConfig(ctx, emsclient.RemoveConfigParams{ID: id}); err != nil {
			errs = append(errs, fmt.Errorf("remove replica %d of %s on %s: %w", id, name, m.client, err))
			continue
		}
		l, msg := b.log.Info(), "removed replica of a stream gone from its origin"
		if repair {
			b.metrics.Repair("remove_replica")
			l, msg = b.log.Warn(), "repaired: removed replica whose origin stream is gone"
		} else {
			b.metrics.Action("remove_replica")
		}
		l.Str(logfield.EMS, src).Str(logfield.Stream, name).Str(logfield.Target, m.client.String()).
			Uint64(logfield.ConfigID, id).Msg(msg)
	}
	return act.Join(errs...)
}

// originHas reports whether the origin EMS still has stream name as an origin stream: a pull
// config or a live inbound stream that emsflow did not create.
func (b *Balancer) originHas(ctx context.Context, client *emsclient.Client, name string) (bool, error) {
	cl, err := client.ListConfig(ctx)
	if err != nil {
		return false, err
	}
	for _, p := range cl.Pull {
		n, _ := p.String("localStreamName")
		if _, ours := provenance.Creator(p); n == name && !ours {
			return true, nil
		}
	}
	streams, err := client.ListStreams(ctx)
	if err != nil {
		return false, err
	}
	st, live := act.LiveInbound(streams)[name]
	if !live {
		return false, nil
	}
	_, ours := provenance.Creator(st)
	return !ours, nil
}

// memberOf returns the group member that is EMS src behind client, or nil: the member with the
// same API, the member whose own rtmp_url is src's configured rtmp_url, or a member given as a
// plain IP that is the stream's own address (ip, nearIp), as the original compared.
func (b *Balancer) memberOf(src string, client *emsclient.Client, stream event.Payload) *member {
	key := apiKey(client.BaseURL())
	for i := range b.members {
		if b.members[i].key == key {
			return &b.members[i]
		}
	}
	if own, ok := b.rtmp[src]; ok {
		for i := range b.members {
			if m := &b.members[i]; m.given && sameRTMP(m.rtmp, own) {
				return m
			}
		}
	}
	for i := range b.members {
		m := &b.members[i]
		if !m.plain {
			continue
		}
		for _, k := range []string{"ip", "nearIp"} {
			if ip, _ := stream.String(k); ip != "" && strings.EqualFold(ip, m.host) {
				return m
			}
		}
	}
	return nil
}

// rtmpOf returns where the streams of EMS src behind client are pulled from: its member's own
// rtmp_url; else src's configured rtmp_url (ems.<name>.rtmp_url); else, as before, its member's
// RTMP address worked out from the API address, or rtmp://<API host>/live, or the stream's own
// address when the API is reached on loopback (a name other servers cannot use).
func (b *Balancer) rtmpOf(src string, client *emsclient.Client, m *member, stream event.Payload) string {
	if m != nil && m.given {
		return m.rtmp
	}
	if u, ok := b.rtmp[src]; ok {
		return u
	}
	if m != nil {
		return m.rtmp
	}
	host := "localhost"
	if u, err := url.Parse(client.BaseURL()); err == nil {
		host = u.Hostname()
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		if s, _ := stream.String("ip"); s != "" {
			host = s
		}
	}
	return "rtmp://" + hostOnly(host) + "/live"
}

// sameRTMP reports whether two RTMP base URLs name the same address: scheme and host compared
// without case, port and application exactly.
func sameRTMP(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	if errA != nil || errB != nil {
		return a == b
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Hostname(), ub.Hostname()) &&
		ua.Port() == ub.Port() && strings.TrimRight(ua.Path, "/") == strings.TrimRight(ub.Path, "/")
}

// redact returns a pull URI with its password hidden, for logs.
func redact(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.User == nil {
		return uri
	}
	return u.Redacted()
}

func (b *Balancer) memberClients() map[string]*emsclient.Client {
	out := make(map[string]*emsclient.Client, len(b.members))
	for _, m := range b.members {
		out[m.key] = m.client
	}
	return out
}

func (b *Balancer) skip(src, name, target, reason, detail string) {
	b.metrics.Skip(reason)
	if detail != "" {
		reason += ": " + detail
	}
	e := b.log.Debug().Str(logfield.EMS, src).Str(logfield.Stream, name).Str(logfield.Reason, reason)
	if target != "" {
		e = e.Str(logfield.Target, target)
	}
	e.Msg("skipped")
}

package s3upload

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/emsflow/emsflow/event"
	"github.com/emsflow/emsflow/internal/s3test"
	"github.com/emsflow/emsflow/plugins"
)

// BenchmarkUpload measures, against a real versitygw on loopback:
//
//   - event-to-object latency (event emitted → object stored) for 1 MB segments arriving at 50
//     segments/s over 4 streams, each stream's events handled in order as the dispatcher does
//     (reported as latency-p50-ms and latency-p99-ms);
//   - upload throughput of the uploader against a plain transfermanager loop uploading the same
//     files with the same parallelism in the same run (MB/s of each and their ratio, target ≥ 0.8).
//
// Run it once: go test -run '^$' -bench BenchmarkUpload -benchtime 1x ./plugins/s3upload/
func BenchmarkUpload(b *testing.B) {
	const (
		streams  = 4
		rate     = 50 // segments per second, all streams together
		seconds  = 3
		segBytes = 1 << 20
	)
	srv := s3test.Start(b)
	srv.CreateBucket(b, "bench")
	root := b.TempDir()
	n := rate * seconds
	files := make([]string, n)
	buf := make([]byte, segBytes)
	for i := range files {
		if _, err := rand.Read(buf); err != nil {
			b.Fatal(err)
		}
		files[i] = filepath.Join(root, "g", fmt.Sprintf("s%d", i%streams), fmt.Sprintf("segment_%d.ts", i))
		if err := os.MkdirAll(filepath.Dir(files[i]), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(files[i], buf, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	newUploader := func(prefix string) *Uploader {
		cfg, err := ParseConfig([]byte(fmt.Sprintf(`{"aws_access_key":%q,"aws_secret_key":%q,"default_bucket":"bench","endpoint":%q,"force_path_style":true,"media_roots":[%q],"prefix":%q}`,
			srv.AccessKey, srv.SecretKey, srv.Endpoint, root, prefix)))
		if err != nil {
			b.Fatal(err)
		}
		u, err := New(KindHLS, "bench", cfg, benchDeps())
		if err != nil {
			b.Fatal(err)
		}
		if err := u.Start(b.Context()); err != nil {
			b.Fatal(err)
		}
		return u
	}
	events := make([]*event.Event, n)
	for i, f := range files {
		ev, err := event.Decode(fmt.Appendf(nil, `{"id":%d,"payload":{"file":%q},"timestamp":%d,"type":"hlsChunkClosed"}`, i+1, f, time.Now().Unix()))
		if err != nil {
			b.Fatal(err)
		}
		events[i] = ev
	}

	for b.Loop() {
		// Latency at 50 segments/s: one ordered worker per stream, as the dispatcher's OrderKey.
		u := newUploader(fmt.Sprintf("lat-%d", time.Now().UnixNano()))
		queues := make([]chan int, streams)
		lat := make([]time.Duration, n)
		emitted := make([]time.Time, n)
		var wg sync.WaitGroup
		for s := range queues {
			queues[s] = make(chan int, n)
			wg.Go(func() {
				for i := range queues[s] {
					if err := u.Handle(b.Context(), events[i]); err != nil {
						b.Error(err)
					}
					lat[i] = time.Since(emitted[i])
				}
			})
		}
		tick := time.NewTicker(time.Second / rate)
		for i := range n {
			<-tick.C
			emitted[i] = time.Now()
			queues[i%streams] <- i
		}
		tick.Stop()
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[n/2].Microseconds())/1000, "latency-p50-ms")
		b.ReportMetric(float64(lat[n*99/100].Microseconds())/1000, "latency-p99-ms")

		// Throughput, same files, same parallelism (one worker per stream), in the order
		// uploader, plain, plain, uploader so that load from elsewhere on the machine weighs on
		// both alike.
		tm := transfermanager.New(s3.New(srv.ClientOptions()), func(o *transfermanager.Options) {
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		})
		runOurs := func() time.Duration {
			u2 := newUploader(fmt.Sprintf("tp-%d", time.Now().UnixNano()))
			start := time.Now()
			parallel(streams, n, func(i int) {
				if err := u2.Handle(b.Context(), events[i]); err != nil {
					b.Error(err)
				}
			})
			return time.Since(start)
		}
		runPlain := func() time.Duration {
			prefix := fmt.Sprintf("plain-%d/", time.Now().UnixNano())
			start := time.Now()
			parallel(streams, n, func(i int) {
				f, err := os.Open(files[i])
				if err != nil {
					b.Error(err)
					return
				}
				defer f.Close()
				if _, err := tm.UploadObject(b.Context(), &transfermanager.UploadObjectInput{
					Bucket: aws.String("bench"), Key: aws.String(prefix + event.PathTail(files[i], 3)), Body: f,
				}); err != nil {
					b.Error(err)
				}
			})
			return time.Since(start)
		}
		ours := runOurs()
		plain := runPlain()
		plain += runPlain()
		ours += runOurs()
		ours, plain = ours/2, plain/2
		mb := float64(n*segBytes) / 1e6
		b.ReportMetric(mb/ours.Seconds(), "uploader-MB/s")
		b.ReportMetric(mb/plain.Seconds(), "plain-MB/s")
		b.ReportMetric(plain.Seconds()/ours.Seconds(), "ratio")
	}
}

// parallel runs fn(i) for i in [0,n) on w workers, worker k taking i ≡ k (mod w).
func parallel(w, n int, fn func(i int)) {
	var wg sync.WaitGroup
	for k := range w {
		wg.Go(func() {
			for i := k; i < n; i += w {
				fn(i)
			}
		})
	}
	wg.Wait()
}

func benchDeps() plugins.Deps {
	return plugins.Deps{Log: zerolog.Nop(), Metrics: prometheus.NewRegistry(), Now: time.Now}
}
